"""The rolling deploy drill in its short form: the previous release (the parent of the commit
that added the newest migration) and this checkout serve one queue at once, the old one drains
and stops, a rollback brings it back on the newer schema; producers never stop."""

from __future__ import annotations

from tests.support.services import ServiceUrls


async def test_two_releases_side_by_side_then_a_rollback_lose_nothing(clean: ServiceUrls) -> None:
    """Every acknowledged job has one outcome and ran once; jobs enqueued through either release
    ran on both; the current release applied a migration while the previous one kept working."""
    from drills.releases import before_newest_migration
    from drills.rolling_deploy import rehearse

    report = await rehearse(before_newest_migration(), clean.redis_url, clean.database_url, phase_s=2.0, rate=40)
    print("\n" + report.render())
    assert report.migrations_by_current, "the previous release must be one schema change behind"
    assert len(report.acknowledged) > 100
    assert report.lost == [] and report.twice == []
    assert all(report.crossed(a, b) for a in ("old", "new") for b in ("old", "new"))
