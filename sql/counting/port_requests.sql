-- port_request.<state> and port_request.first_<state> (quantities.md §1, the view's rule):
-- quantity = number of numbers; `first_` too when exactly one transition reached the state.
SELECT p.account_id AS account_id, 'port_request' AS category, COALESCE(p.port_state, 'unconfirmed') AS item,
       SUM(p.number_count) AS quantity
FROM port_requests p JOIN reconcile_scope s ON s.account_id = p.account_id
WHERE p.enabled AND NOT p.deleted
GROUP BY p.account_id, COALESCE(p.port_state, 'unconfirmed')
UNION ALL
SELECT p.account_id, 'port_request', 'first_' || COALESCE(p.port_state, 'unconfirmed'), SUM(p.number_count)
FROM port_requests p JOIN reconcile_scope s ON s.account_id = p.account_id
WHERE p.enabled AND NOT p.deleted
  AND (SELECT COUNT(*) FROM port_request_transitions t
       WHERE t.port_request_id = p.id
         AND COALESCE(t.new_state, 'unconfirmed') = COALESCE(p.port_state, 'unconfirmed')) = 1
GROUP BY p.account_id, COALESCE(p.port_state, 'unconfirmed')
