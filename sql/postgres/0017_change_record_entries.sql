-- A quantity-change record keeps its entries as one JSON array, in the order of
-- audit-and-summaries.md §4.2.4, as Kazoo keeps them in the record document's `audit`
-- list: each entry {"bucket", "category", "source", "quantity", "billable"}. Nothing
-- reads one entry alone, and a first night of 100,000 accounts wrote 3.6 million
-- entry rows, each with its key in an index, for 100,000 records.
ALTER TABLE quantity_change_records ADD COLUMN entries TEXT NOT NULL DEFAULT '[]';

UPDATE quantity_change_records r SET entries = e.entries
FROM (SELECT record_id,
             json_agg(json_build_object('bucket', bucket, 'category', category, 'source', source,
                                        'quantity', quantity, 'billable', billable) ORDER BY position)::text AS entries
      FROM quantity_change_entries GROUP BY record_id) e
WHERE e.record_id = r.id;

DROP TABLE quantity_change_entries;
