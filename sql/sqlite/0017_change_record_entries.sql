-- A quantity-change record keeps its entries as one JSON array, in the order of
-- audit-and-summaries.md §4.2.4, as Kazoo keeps them in the record document's `audit`
-- list: each entry {"bucket", "category", "source", "quantity", "billable"}. Nothing
-- reads one entry alone, and a first night of 100,000 accounts wrote 3.6 million
-- entry rows, each with its key in an index, for 100,000 records.
ALTER TABLE quantity_change_records ADD COLUMN entries TEXT NOT NULL DEFAULT '[]';

UPDATE quantity_change_records SET entries = (
    SELECT json_group_array(json_object('bucket', e.bucket, 'category', e.category, 'source', e.source,
                                        'quantity', e.quantity, 'billable', e.billable) ORDER BY e.position)
    FROM quantity_change_entries e WHERE e.record_id = quantity_change_records.id)
WHERE EXISTS (SELECT 1 FROM quantity_change_entries e WHERE e.record_id = quantity_change_records.id);

DROP TABLE quantity_change_entries;
