-- number_carriers.<module>, number_services.<feature> and phone_numbers.<classification>
-- (quantities.md §1, §2). Numbers with the feature `local` get no classification.
SELECT n.account_id AS account_id, 'number_carriers' AS category, n.carrier_module AS item, COUNT(*) AS quantity
FROM phone_numbers n
JOIN reconcile_scope s ON s.account_id = n.account_id
WHERE n.enabled AND NOT n.deleted
GROUP BY n.account_id, n.carrier_module
UNION ALL
SELECT n.account_id, 'number_services', f.feature, COUNT(*)
FROM phone_numbers n
JOIN reconcile_scope s ON s.account_id = n.account_id
JOIN phone_number_features f ON f.number_id = n.id
WHERE n.enabled AND NOT n.deleted
GROUP BY n.account_id, f.feature
UNION ALL
SELECT n.account_id, 'phone_numbers', n.classification, COUNT(*)
FROM phone_numbers n
JOIN reconcile_scope s ON s.account_id = n.account_id
WHERE n.enabled AND NOT n.deleted AND n.classification IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM phone_number_features f WHERE f.number_id = n.id AND f.feature = 'local')
GROUP BY n.account_id, n.classification
