//! VeloZ order-list bodies shared by the comparison bench and the golden test: the golden
//! digests were taken on exactly these, so the bench measures what the test pins.

/// PY `/api/orders_state`: `{"items": [OrderState]}` with Python's `json.dumps` spacing.
pub fn py_orders(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"client_order_id": "web-17672256000{i:02}", "symbol": "BTCUSDT", "side": "{side}", "order_qty": 0.0{q}, "limit_price": {p}.0, "venue_order_id": "sim-{i}", "status": "ACCEPTED", "reason": null, "executed_qty": 0.0, "avg_price": null, "last_ts_ns": 17672256001234{i:05}}}"#,
                side = if i % 2 == 0 { "BUY" } else { "SELL" },
                q = i + 1,
                p = 42000 + i * 10,
            )
        })
        .collect();
    format!(r#"{{"items": [{}]}}"#, items.join(", "))
}

/// CPP `/api/orders`: `{"status":"success","data":[order]}`, compact, hash-map order, renamed
/// fields, lower-case side, `""` for absent strings, its own timestamps.
pub fn cpp_orders(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .rev()
        .map(|i| {
            format!(
                r#"{{"client_order_id":"web-17672256000{i:02}","symbol":"BTCUSDT","side":"{side}","qty":0.0{q},"price":{p},"executed_qty":0,"avg_price":null,"status":"ACCEPTED","venue_order_id":"sim-{i}","reason":"","last_update_ns":17672256009999{i:05},"created_ns":17672256009999{i:05}}}"#,
                side = if i % 2 == 0 { "buy" } else { "sell" },
                q = i + 1,
                p = 42000 + i * 10,
            )
        })
        .collect();
    format!(r#"{{"status":"success","data":[{}]}}"#, items.join(","))
}
