"""`workhorse search --org ORG "question"`: the org's document chunks closest to a question."""

from __future__ import annotations

import argparse
from typing import Any

from app.cli.table import print_json, print_table
from app.config import Settings
from app.documents.search import similar
from app.jobs import build_registry
from app.providers.embedding import no_provider_reason
from app.runtime.startup import open_resources


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("search", help="similarity search over an org's document chunks")
    s.add_argument("question")
    s.add_argument("--org", required=True, help="the organization whose documents to search")
    s.add_argument("-k", "--top", type=int, default=5, help="how many chunks (default 5)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler=search)


async def search(settings: Settings, args: argparse.Namespace) -> int:
    async with open_resources(settings, build_registry(settings)) as res:
        matches = await similar(res.db, res.providers.embedding, args.org, args.question, args.top,
                                why_no_provider=no_provider_reason(settings.embedding))
    if args.json:
        print_json([{"documentId": m.document_id, "chunkIndex": m.chunk_index, "distance": m.distance,
                     "startChar": m.start_char, "endChar": m.end_char, "content": m.content} for m in matches])
    else:
        print_table(["distance", "document", "chunk", "text"],
                    [[f"{m.distance:.4f}", m.document_id, m.chunk_index, " ".join(m.content.split())]
                     for m in matches])
    return 0
