//! Order pricing: pure integer arithmetic on minor units.
//!
//! All amounts are in the restaurant's currency.
//!
//! - **subtotal** = Σ unit price × quantity.
//! - **delivery fee** = [`BASE_DELIVERY_FEE`] (199) + [`DELIVERY_FEE_PER_STARTED_KM`]
//!   (60) for every started kilometre beyond [`FREE_DELIVERY_DISTANCE_M`]
//!   (2 km), capped at [`MAX_DELIVERY_FEE`] (699). The great-circle distance
//!   is first rounded to the nearest whole metre, so 2 000.4 m costs 199 and
//!   2 001 m costs 259.
//! - **service fee** = [`SERVICE_FEE_BPS`] (5 %) of the subtotal, rounded half
//!   up, then clamped to [[`MIN_SERVICE_FEE`], [`MAX_SERVICE_FEE`]] = [49, 299].
//! - **tax** = subtotal × `tax_bps` / 10 000, rounded half up.
//! - **commission** = subtotal × `commission_bps` / 10 000, rounded half up;
//!   reported for settlement, never charged to the customer.
//! - **total** = subtotal + delivery fee + service fee + tax + tip.
//!
//! **Caps** ([`caps`]): what a customer can make an order cost is bounded per
//! currency, so no sum of orders a read model keeps can come near `i64`.
//!
//! | currency | largest tip | largest total |
//! |---|---|---|
//! | EUR, GBP, USD (and any other currency) | 100.00 (10 000 minor units) | 5 000.00 (500 000 minor units) |
//!
//! A tip above the cap is 422 `tip_too_large`; an order whose total would be
//! above the cap is 422 `order_total_too_large` (nothing is stored).

use ordertrail_schemas::events::{OrderLine, PriceBreakdown, RefundAllocation};
use ordertrail_schemas::{Currency, Money, MoneyError};

/// Orders are delivered no farther than this from the restaurant (great circle).
pub const MAX_DELIVERY_DISTANCE_M: f64 = 15_000.0;
/// Distance covered by the base delivery fee.
pub const FREE_DELIVERY_DISTANCE_M: i64 = 2_000;
/// Delivery fee up to [`FREE_DELIVERY_DISTANCE_M`], minor units.
pub const BASE_DELIVERY_FEE: i64 = 199;
/// Added for every started kilometre beyond [`FREE_DELIVERY_DISTANCE_M`].
pub const DELIVERY_FEE_PER_STARTED_KM: i64 = 60;
/// The delivery fee never exceeds this.
pub const MAX_DELIVERY_FEE: i64 = 699;
/// Service fee rate on the subtotal, basis points.
pub const SERVICE_FEE_BPS: i64 = 500;
/// Smallest service fee, minor units.
pub const MIN_SERVICE_FEE: i64 = 49;
/// Largest service fee, minor units.
pub const MAX_SERVICE_FEE: i64 = 299;

/// The most a customer can tip and an order can cost, minor units of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderCaps {
    /// Largest tip, minor units.
    pub max_tip: i64,
    /// Largest order total, minor units.
    pub max_total: i64,
}

/// Caps of the currencies we sell in (EUR, GBP, USD: two decimals).
pub const TWO_DECIMAL_CAPS: OrderCaps = OrderCaps {
    max_tip: 10_000,
    max_total: 500_000,
};

/// The caps of `currency` (see the table in the module docs). Every currency
/// the catalog knows has two decimals; an unlisted currency gets the same
/// minor-unit caps, which only makes it stricter for currencies with fewer
/// decimals.
pub fn caps(_currency: Currency) -> OrderCaps {
    TWO_DECIMAL_CAPS
}

/// Delivery fee for a great-circle distance in metres.
pub fn delivery_fee(distance_m: f64, currency: Currency) -> Money {
    // Rounded to whole metres; NaN and negatives count as 0 (`as` saturates).
    let metres = (distance_m.round() as i64).max(0);
    let beyond = metres.saturating_sub(FREE_DELIVERY_DISTANCE_M);
    let started_km = if beyond > 0 {
        (beyond + 999) / 1_000
    } else {
        0
    };
    let fee =
        BASE_DELIVERY_FEE.saturating_add(DELIVERY_FEE_PER_STARTED_KM.saturating_mul(started_km));
    Money::new(fee.min(MAX_DELIVERY_FEE), currency)
}

/// Service fee: 5 % of the subtotal, rounded half up, clamped to [49, 299].
pub fn service_fee(subtotal: Money) -> Result<Money, MoneyError> {
    let fee = subtotal.percent_bps(SERVICE_FEE_BPS)?;
    Ok(Money::new(
        fee.amount.clamp(MIN_SERVICE_FEE, MAX_SERVICE_FEE),
        subtotal.currency,
    ))
}

/// Unit price × quantity.
pub fn line_total(unit_price: Money, quantity: u32) -> Result<Money, MoneyError> {
    unit_price.checked_mul(i64::from(quantity))
}

/// Σ of the lines' totals (each line's `line_total` as given).
pub fn subtotal(currency: Currency, lines: &[OrderLine]) -> Result<Money, MoneyError> {
    lines.iter().try_fold(Money::zero(currency), |sum, line| {
        sum.checked_add(line.line_total)
    })
}

/// The full price of an order. `lines` must already carry their line totals
/// (see [`line_total`]); every amount must be in `currency`.
pub fn price_order(
    currency: Currency,
    lines: &[OrderLine],
    distance_m: f64,
    tax_bps: i64,
    commission_bps: i64,
    tip: Money,
) -> Result<PriceBreakdown, MoneyError> {
    let subtotal = subtotal(currency, lines)?;
    let delivery_fee = delivery_fee(distance_m, currency);
    let service_fee = service_fee(subtotal)?;
    let tax = subtotal.percent_bps(tax_bps)?;
    let commission = subtotal.percent_bps(commission_bps)?;
    let total = subtotal
        .checked_add(delivery_fee)?
        .checked_add(service_fee)?
        .checked_add(tax)?
        .checked_add(tip)?;
    Ok(PriceBreakdown {
        subtotal,
        delivery_fee,
        service_fee,
        tax,
        tip,
        total,
        commission,
    })
}

/// How a refund is split over the order's price components, so that the
/// restaurant bears only its share.
///
/// - The components still unrefunded are `remaining_c = component_c −
///   already_c` for c in items (subtotal), delivery fee, service fee, tax, tip.
/// - Each gets `floor(amount × remaining_c / Σ remaining)`; the few minor
///   units left by flooring go one each to the components with the largest
///   remainders (ties: items, tax, delivery fee, service fee, tip). The parts
///   add up to `amount` exactly, and a refund of everything left refunds
///   every component exactly.
/// - **Commission reversed**: the platform gives back commission on the
///   refunded item sales: cumulatively `round_half_away(commission ×
///   items refunded so far / subtotal)`, minus what was reversed before, so
///   refunding everything reverses exactly the whole commission.
/// - The restaurant bears `items + tax` and gets `commission_reversed` back;
///   delivery and service fees are the platform's, the tip the rider's.
///
/// Worked example (tests below): subtotal 28.99, delivery 3.19, service 1.45,
/// tax 2.03, tip 1.50 (total 37.16), commission 4.35; refund 10.00 →
/// items 7.80, delivery 0.86, service 0.39, tax 0.55, tip 0.40; commission
/// reversed 1.17 (4.35 × 7.80 / 28.99 = 1.1704). The restaurant's net falls by
/// 7.80 + 0.55 − 1.17 = 7.18, not 10.00.
pub fn allocate_refund(
    price: &PriceBreakdown,
    already: Option<&RefundAllocation>,
    amount: Money,
) -> Result<RefundAllocation, MoneyError> {
    let currency = price.total.currency;
    if amount.currency != currency {
        return Err(MoneyError::CurrencyMismatch {
            left: currency,
            right: amount.currency,
        });
    }
    let zero = Money::zero(currency);
    let before = already.copied().unwrap_or(RefundAllocation {
        items: zero,
        delivery_fee: zero,
        service_fee: zero,
        tax: zero,
        tip: zero,
        commission_reversed: zero,
    });
    // Tie-break order: items, tax, delivery fee, service fee, tip.
    let components = [
        (price.subtotal.amount, before.items.amount),
        (price.tax.amount, before.tax.amount),
        (price.delivery_fee.amount, before.delivery_fee.amount),
        (price.service_fee.amount, before.service_fee.amount),
        (price.tip.amount, before.tip.amount),
    ];
    let remaining: Vec<i128> = components
        .iter()
        .map(|(total, done)| i128::from(*total).saturating_sub(i128::from(*done)).max(0))
        .collect();
    let left: i128 = remaining.iter().sum();
    let wanted = i128::from(amount.amount);
    if wanted < 0 || wanted > left {
        return Err(MoneyError::Overflow);
    }
    let mut shares: Vec<i128> = Vec::with_capacity(5);
    let mut rests: Vec<(i128, usize)> = Vec::with_capacity(5);
    for (i, r) in remaining.iter().enumerate() {
        let (share, rest) = if left == 0 {
            (0, 0)
        } else {
            (wanted * r / left, wanted * r % left)
        };
        shares.push(share);
        rests.push((rest, i));
    }
    let mut leftover = wanted - shares.iter().sum::<i128>();
    // Largest remainder first; equal remainders in component order.
    rests.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in rests {
        if leftover <= 0 {
            break;
        }
        if shares[i] < remaining[i] {
            shares[i] += 1;
            leftover -= 1;
        }
    }
    let money = |v: i128| {
        i64::try_from(v)
            .map(|a| Money::new(a, currency))
            .map_err(|_| MoneyError::Overflow)
    };
    let items = money(shares[0])?;
    let items_so_far = i128::from(before.items.amount) + shares[0];
    let subtotal = i128::from(price.subtotal.amount);
    let reversed_so_far = if subtotal == 0 {
        0
    } else {
        let product = i128::from(price.commission.amount) * items_so_far;
        (product + subtotal / 2) / subtotal
    };
    Ok(RefundAllocation {
        items,
        tax: money(shares[1])?,
        delivery_fee: money(shares[2])?,
        service_fee: money(shares[3])?,
        tip: money(shares[4])?,
        commission_reversed: money(
            reversed_so_far - i128::from(before.commission_reversed.amount),
        )?,
    })
}

/// Two allocations added (for the running total of a payment's refunds).
pub fn add_allocations(a: &RefundAllocation, b: &RefundAllocation) -> RefundAllocation {
    let add = |x: Money, y: Money| Money::new(x.amount.saturating_add(y.amount), x.currency);
    RefundAllocation {
        items: add(a.items, b.items),
        delivery_fee: add(a.delivery_fee, b.delivery_fee),
        service_fee: add(a.service_fee, b.service_fee),
        tax: add(a.tax, b.tax),
        tip: add(a.tip, b.tip),
        commission_reversed: add(a.commission_reversed, b.commission_reversed),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ordertrail_schemas::MenuItemId;

    const EUR: Currency = Currency::EUR;

    fn eur(amount: i64) -> Money {
        Money::new(amount, EUR)
    }

    fn line(unit: i64, quantity: u32) -> OrderLine {
        OrderLine {
            menu_item_id: MenuItemId(uuid::Uuid::from_u128(u128::from(quantity) + 1)),
            name: "item".into(),
            unit_price: eur(unit),
            quantity,
            line_total: line_total(eur(unit), quantity).unwrap(),
        }
    }

    /// `delivery_fee` of each distance (metres) is the expected minor amount.
    #[track_caller]
    fn assert_delivery_fees(cases: &[(f64, i64)]) {
        for &(metres, expected) in cases {
            assert_eq!(delivery_fee(metres, EUR), eur(expected), "{metres} m");
        }
    }

    #[test]
    fn delivery_fee_is_base_up_to_two_km() {
        // 2 000.4 m: rounded to the nearest metre first.
        assert_delivery_fees(&[(0.0, 199), (1_999.9, 199), (2_000.0, 199), (2_000.4, 199)]);
    }

    #[test]
    fn delivery_fee_charges_every_started_km_beyond_two() {
        assert_delivery_fees(&[
            (2_000.6, 259),
            (2_001.0, 259),
            (3_000.0, 259),
            (3_001.0, 319),
            (10_000.0, 679),
        ]);
    }

    #[test]
    fn delivery_fee_is_capped() {
        assert_delivery_fees(&[
            (10_001.0, 699),
            (15_000.0, 699),
            (1.0e12, 699),
            (f64::INFINITY, 699),
        ]);
    }

    #[test]
    fn delivery_fee_treats_nonsense_distances_as_zero() {
        assert_delivery_fees(&[(-5.0, 199), (f64::NAN, 199)]);
    }

    #[test]
    fn service_fee_is_five_percent_rounded_half_up() {
        assert_eq!(service_fee(eur(1_010)).unwrap(), eur(51)); // 50.5
        assert_eq!(service_fee(eur(1_009)).unwrap(), eur(50)); // 50.45
        assert_eq!(service_fee(eur(2_000)).unwrap(), eur(100));
    }

    #[test]
    fn service_fee_is_clamped() {
        assert_eq!(service_fee(eur(0)).unwrap(), eur(49));
        assert_eq!(service_fee(eur(979)).unwrap(), eur(49)); // 48.95 -> 49
        assert_eq!(service_fee(eur(500)).unwrap(), eur(49));
        assert_eq!(service_fee(eur(5_980)).unwrap(), eur(299));
        assert_eq!(service_fee(eur(5_990)).unwrap(), eur(299)); // 299.5 -> 300 -> 299
        assert_eq!(service_fee(eur(1_000_000)).unwrap(), eur(299));
    }

    #[test]
    fn price_order_adds_everything_but_commission() {
        let lines = [line(1_250, 2), line(399, 1)];
        let price = price_order(EUR, &lines, 3_500.0, 700, 1_500, eur(150)).unwrap();
        assert_eq!(
            price,
            PriceBreakdown {
                subtotal: eur(2_899),
                delivery_fee: eur(319), // 2 started km
                service_fee: eur(145),  // 144.95
                tax: eur(203),          // 202.93
                tip: eur(150),
                total: eur(2_899 + 319 + 145 + 203 + 150),
                commission: eur(435), // 434.85
            }
        );
    }

    #[test]
    fn tax_and_commission_round_half_up() {
        let lines = [line(10, 1)];
        let price = price_order(EUR, &lines, 0.0, 5_000, 2_500, eur(0)).unwrap();
        assert_eq!(price.tax, eur(5));
        assert_eq!(price.commission, eur(3)); // 2.5 -> 3
        let price = price_order(EUR, &lines, 0.0, 0, 0, eur(0)).unwrap();
        assert_eq!(price.tax, eur(0));
        assert_eq!(price.commission, eur(0));
        assert_eq!(price.total, eur(10 + 199 + 49));
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        assert_eq!(line_total(eur(i64::MAX), 2), Err(MoneyError::Overflow));
        let lines = [line(i64::MAX / 2, 1), line(i64::MAX / 2, 1), line(5, 1)];
        assert_eq!(subtotal(EUR, &lines), Err(MoneyError::Overflow));
    }

    #[test]
    fn mixed_currencies_are_refused() {
        let lines = [line(100, 1)];
        let tip = Money::new(10, Currency::USD);
        assert!(matches!(
            price_order(EUR, &lines, 0.0, 0, 0, tip),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
    }

    /// The order of `price_order_adds_everything_but_commission`.
    fn example_price() -> PriceBreakdown {
        price_order(
            EUR,
            &[line(1_250, 2), line(399, 1)],
            3_500.0,
            700,
            1_500,
            eur(150),
        )
        .unwrap()
    }

    #[test]
    fn a_partial_refund_is_allocated_by_component_worked_example() {
        let price = example_price();
        assert_eq!(price.total, eur(3_716));
        let a = allocate_refund(&price, None, eur(1_000)).unwrap();
        // 1000 × c / 3716: items 780.14, delivery 85.84, service 39.02,
        // tax 54.63, tip 40.37 → floors 998; the 2 left go to the largest
        // remainders (delivery .84, tax .63).
        assert_eq!(
            a,
            RefundAllocation {
                items: eur(780),
                delivery_fee: eur(86),
                service_fee: eur(39),
                tax: eur(55),
                tip: eur(40),
                commission_reversed: eur(117), // 435 × 780 / 2899 = 117.04
            }
        );
        let parts = a.items.amount
            + a.delivery_fee.amount
            + a.service_fee.amount
            + a.tax.amount
            + a.tip.amount;
        assert_eq!(parts, 1_000);
        // The restaurant bears items + tax − commission reversed = 718, not 1000.
        assert_eq!(
            a.items.amount + a.tax.amount - a.commission_reversed.amount,
            718
        );
    }

    #[test]
    fn refunding_the_rest_refunds_every_component_and_the_whole_commission() {
        let price = example_price();
        let first = allocate_refund(&price, None, eur(1_000)).unwrap();
        let rest = allocate_refund(&price, Some(&first), eur(2_716)).unwrap();
        let all = add_allocations(&first, &rest);
        assert_eq!(
            all,
            RefundAllocation {
                items: price.subtotal,
                delivery_fee: price.delivery_fee,
                service_fee: price.service_fee,
                tax: price.tax,
                tip: price.tip,
                commission_reversed: price.commission,
            }
        );
        assert_eq!(rest.commission_reversed, eur(318));
    }

    #[test]
    fn a_full_refund_at_once_reverses_everything() {
        let price = example_price();
        let a = allocate_refund(&price, None, price.total).unwrap();
        assert_eq!(a.items, price.subtotal);
        assert_eq!(a.tip, price.tip);
        assert_eq!(a.commission_reversed, price.commission);
    }

    #[test]
    fn more_than_is_left_cannot_be_allocated() {
        let price = example_price();
        assert!(allocate_refund(&price, None, eur(3_717)).is_err());
        assert!(allocate_refund(&price, None, Money::new(1, Currency::USD)).is_err());
    }
}
