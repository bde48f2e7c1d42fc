-- Read models never overflow (issue 13): the running sums of the settlement
-- read model are numeric, so no number of orders on one day can make an
-- addition fail (a bigint overflow used to stop the settlements projector
-- for good). Per-event figures stay bigint: a single event's amount is an
-- i64 and, since the order caps (domain/src/pricing.rs), at most 5 000.00.
-- Readers cast to bigint; with the caps a day would need more than 10^13
-- orders to leave its range.
ALTER TABLE restaurant_settlement_days
    ALTER COLUMN orders               TYPE numeric(38, 0),
    ALTER COLUMN gross_sales_minor    TYPE numeric(38, 0),
    ALTER COLUMN tax_minor            TYPE numeric(38, 0),
    ALTER COLUMN delivery_fees_minor  TYPE numeric(38, 0),
    ALTER COLUMN service_fees_minor   TYPE numeric(38, 0),
    ALTER COLUMN tips_minor           TYPE numeric(38, 0),
    ALTER COLUMN commission_minor     TYPE numeric(38, 0),
    ALTER COLUMN provider_fees_minor  TYPE numeric(38, 0),
    ALTER COLUMN refunds_minor        TYPE numeric(38, 0),
    ALTER COLUMN cash_collected_minor TYPE numeric(38, 0),
    ALTER COLUMN net_payable_minor    TYPE numeric(38, 0);

ALTER TABLE provider_settlement_days
    ALTER COLUMN authorized_minor TYPE numeric(38, 0),
    ALTER COLUMN captured_minor   TYPE numeric(38, 0),
    ALTER COLUMN voided_minor     TYPE numeric(38, 0),
    ALTER COLUMN refunded_minor   TYPE numeric(38, 0),
    ALTER COLUMN fees_minor       TYPE numeric(38, 0);
