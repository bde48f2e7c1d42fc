-- The backoffice's commonest list: one restaurant's orders in one status,
-- newest first (`GET /v1/orders?restaurant_id=…&status=…`). With only
-- `order_history_restaurant` PostgreSQL reads every order of the restaurant
-- whose status it then checks, or all its orders in that status and sorts
-- them: either grows with the restaurant's history. This index walks
-- exactly one page of rows in order however large the history grows.
CREATE INDEX order_history_restaurant_status
    ON order_history (restaurant_id, status, placed_at DESC, order_id DESC);
