-- accounts.account: 1 for the account document itself when enabled and not deleted
-- (quantities.md §1; Kazoo's incremental path counts users instead, a bug we do not copy).
SELECT a.id AS account_id, 'accounts' AS category, 'account' AS item, 1 AS quantity
FROM accounts a
JOIN reconcile_scope s ON s.account_id = a.id
WHERE a.enabled AND NOT a.deleted
