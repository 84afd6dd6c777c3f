-- Documents (issue 11): the OCR output of an attempt, kept so that a retry of the same job on the
-- same file (after a vision 5xx, say) reuses it instead of running tesseract again; OCR
-- confidence on the web app's 0-1 scale; and when, how many and with which model the document's
-- chunks were embedded (written in the transaction that stores the vectors).
ALTER TABLE documents ADD COLUMN ocr_job_id text;
ALTER TABLE documents ADD COLUMN ocr_file_sha256 text;
ALTER TABLE documents ADD COLUMN ocr_file_type text;
ALTER TABLE documents ADD COLUMN ocr_pages integer;
ALTER TABLE documents ADD COLUMN ocr_text_layer_pages integer;
ALTER TABLE documents ADD COLUMN embedded_at timestamptz;
ALTER TABLE documents ADD COLUMN embedding_count integer;
ALTER TABLE documents ADD COLUMN embedding_model text;

-- Confidence was stored as tesseract gives it, 0-100. A value above 1 can only be an old one; an
-- old value of at most 1 (%) stays as it is, as near to the truth on either scale.
UPDATE documents SET ocr_confidence = ocr_confidence / 100 WHERE ocr_confidence > 1;
ALTER TABLE documents ADD CONSTRAINT documents_ocr_confidence_0_1 CHECK (ocr_confidence BETWEEN 0 AND 1);

-- Documents embedded before these columns existed.
UPDATE documents d
SET embedded_at = e.embedded_at, embedding_count = e.chunks, embedding_model = e.model
FROM (SELECT document_id, max(created_at) AS embedded_at, count(*) AS chunks, max(model) AS model
      FROM document_embeddings GROUP BY document_id) e
WHERE e.document_id = d.id;
