-- account_apps.<name> and user_apps.<name> (quantities.md §1, §3 step 3, ours):
-- `all` counts every counted user of the account, `admins` its admins, `specific` the
-- length of the app's users list; each app is resolved before summing.
SELECT p.account_id AS account_id, 'account_apps' AS category, p.name AS item, COUNT(*) AS quantity
FROM app_store_apps p
JOIN app_stores st ON st.account_id = p.account_id
JOIN reconcile_scope s ON s.account_id = p.account_id
WHERE st.enabled AND NOT st.deleted AND NOT p.blacklisted
GROUP BY p.account_id, p.name
UNION ALL
SELECT p.account_id, 'user_apps', p.name,
       SUM(CASE p.allowed_users
               WHEN 'all' THEN COALESCE(uc.users, 0)
               WHEN 'admins' THEN COALESCE(uc.admins, 0)
               WHEN 'specific' THEN p.specific_users
               ELSE 0
           END)
FROM app_store_apps p
JOIN app_stores st ON st.account_id = p.account_id
JOIN reconcile_scope s ON s.account_id = p.account_id
LEFT JOIN (
    SELECT u.account_id AS account_id, COUNT(*) AS users,
           SUM(CASE WHEN u.priv_level = 'admin' THEN 1 ELSE 0 END) AS admins
    FROM users u
    JOIN reconcile_scope s2 ON s2.account_id = u.account_id
    WHERE u.enabled AND NOT u.deleted
    GROUP BY u.account_id
) uc ON uc.account_id = p.account_id
WHERE st.enabled AND NOT st.deleted AND NOT p.blacklisted
GROUP BY p.account_id, p.name
