-- Delivery speed (issue 13): every query on the delivery path reads through an index,
-- so a delivery costs the same however many audit rows the platform has kept.

-- A delivery's answer is recorded on its audit rows by delivery id (without this,
-- each recorded batch scanned the whole of audit_logs).
CREATE INDEX audit_logs_by_delivery ON audit_logs (delivery_id) WHERE delivery_id IS NOT NULL;
