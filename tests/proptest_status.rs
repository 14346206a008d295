//! Property tests of the status projection and fold (`core::status`): RBM delivers receipts
//! at least once and in any order, so the status must be a function of the **set** of
//! recorded event types, and the folded view a function of the set of records.

use proptest::prelude::*;
use proptest::sample::subsequence;
use rbm_edge::core::status::{fold, project, RecordMeta, RecordType, Source, Status};
use rbm_edge::core::time::parse_rfc3339_nanos;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 512, ..ProptestConfig::default() }
}

/// Any subset of the record types, each at most once.
fn type_set() -> impl Strategy<Value = Vec<RecordType>> {
    subsequence(RecordType::ALL.to_vec(), 0..=RecordType::ALL.len())
}

/// A set, and a sequence holding each member 1 to 4 times in a shuffled order.
fn set_and_delivery() -> impl Strategy<Value = (Vec<RecordType>, Vec<RecordType>)> {
    type_set().prop_flat_map(|set| {
        let copies = proptest::collection::vec(1usize..=4, set.len());
        (Just(set.clone()), copies).prop_flat_map(|(set, copies)| {
            let seq: Vec<RecordType> =
                set.iter().zip(&copies).flat_map(|(t, n)| std::iter::repeat_n(*t, *n)).collect();
            (Just(set), Just(seq).prop_shuffle())
        })
    })
}

/// Timestamps as RBM and our clock write them (precision 0 to 9 digits, `Z` or an offset),
/// many within the same second so ties and mixed precisions are common, and some garbage.
fn timestamp() -> impl Strategy<Value = String> {
    let valid = (
        2018u32..=2027,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        prop_oneof![Just(23u32), 0u32..60],
        prop_oneof![Just(String::new()), "\\.[0-9]{1,9}"],
        prop_oneof![Just("Z".to_string()), Just("+00:00".to_string()), "[+-]0[0-9]:[03]0"],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, zone)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{zone}")
        });
    let same_second = "\\.[0-9]{1,9}".prop_map(|frac| format!("2018-12-31T15:01:23{frac}Z"));
    prop_oneof![4 => valid, 4 => same_second, 1 => "\\PC{0,30}"]
}

fn meta() -> impl Strategy<Value = RecordMeta> {
    (
        timestamp(),
        timestamp(),
        any::<bool>(),
        proptest::option::of("[A-Za-z0-9_-]{1,12}"),
        proptest::option::of(prop_oneof![Just("+12223334444".to_string()), "\\+[1-9][0-9]{7,14}"]),
        proptest::option::of(prop_oneof![Just("AGENT_ID".to_string()), "[a-z_]{1,12}"]),
        proptest::option::of(400u16..500),
    )
        .prop_map(|(at, received_at, api, event_id, phone_number, agent_id, http_status)| RecordMeta {
            at,
            received_at,
            source: if api { Source::Api } else { Source::Webhook },
            event_id,
            phone_number,
            agent_id,
            http_status,
            fallback: None,
        })
}

/// Records as KV returns them: at most one per type, each with its own metadata.
fn records() -> impl Strategy<Value = Vec<(RecordType, RecordMeta)>> {
    type_set().prop_flat_map(|set| {
        let n = set.len();
        (Just(set), proptest::collection::vec(meta(), n))
            .prop_map(|(set, metas)| set.into_iter().zip(metas).collect::<Vec<_>>())
    })
}

fn statuses(types: &[RecordType]) -> Option<Status> {
    types.iter().map(|t| t.status()).max()
}

proptest! {
    #![proptest_config(config())]

    /// Any permutation and duplication of an event set gives the status of the set.
    #[test]
    fn permutation_and_duplication_give_the_status_of_the_set((set, seq) in set_and_delivery()) {
        let want = project(set.iter().copied());
        prop_assert_eq!(want, statuses(&set));
        prop_assert_eq!(project(seq.iter().copied()), want);
        prop_assert_eq!(project(seq.iter().rev().copied()), want);
        prop_assert_eq!(want.is_none(), set.is_empty());
    }

    /// Precedence: READ > DELIVERED > (revoked) > (expired) > SENT > FAILED, whatever else
    /// arrived, in whatever order.
    #[test]
    fn delivered_or_read_in_the_set_is_never_hidden((set, seq) in set_and_delivery()) {
        let status = project(seq.iter().copied());
        if set.contains(&RecordType::Delivered) {
            prop_assert!(status >= Some(Status::Delivered), "{:?} -> {:?}", seq, status);
        }
        if set.contains(&RecordType::Read) {
            prop_assert_eq!(status, Some(Status::Read));
        }
        if set.contains(&RecordType::Sent) {
            prop_assert!(status >= Some(Status::Sent));
        }
        for t in &set {
            prop_assert!(status >= Some(t.status()));
        }
    }

    /// The folded view does not depend on the order KV lists the records in: same status,
    /// same event order, same phone number, agent and `updatedAt`.
    #[test]
    fn fold_is_order_independent(
        (recs, shuffled) in records().prop_flat_map(|r| (Just(r.clone()), Just(r).prop_shuffle()))
    ) {
        let view = fold("m", recs.clone());
        prop_assert_eq!(&view, &fold("m", shuffled));
        let mut reversed = recs.clone();
        reversed.reverse();
        prop_assert_eq!(&view, &fold("m", reversed));
        let types: Vec<RecordType> = recs.iter().map(|(t, _)| *t).collect();
        prop_assert_eq!(view.as_ref().map(|v| v.status), project(types.iter().copied()));
    }

    /// Duplicated records (a redelivered event rewriting its key) change neither the status
    /// nor, when identical, the view's order.
    #[test]
    fn fold_of_duplicated_records(
        (recs, dup) in records().prop_flat_map(|r| {
            let n = r.len();
            (Just(r), proptest::collection::vec(0usize..8, n.min(1)..=n.max(1)))
        }),
        seed in any::<u64>(),
    ) {
        let mut doubled = recs.clone();
        for i in dup {
            if let Some(r) = recs.get(i % recs.len().max(1)) {
                doubled.push(r.clone());
            }
        }
        let view = fold("m", recs.clone());
        let doubled_view = fold("m", doubled.clone());
        prop_assert_eq!(view.as_ref().map(|v| v.status), doubled_view.as_ref().map(|v| v.status));
        // Same multiset of identical records in another order: the same view.
        let mut rotated = doubled.clone();
        if !rotated.is_empty() {
            let k = (seed as usize) % rotated.len();
            rotated.rotate_left(k);
        }
        prop_assert_eq!(&doubled_view, &fold("m", rotated));
    }

    /// Events are listed by when they happened (numerically, across precisions and offsets),
    /// and the API's own phone number and agent win over the webhook's.
    #[test]
    fn fold_sorts_by_instant_and_prefers_api_fields(recs in records()) {
        let Some(view) = fold("m", recs.clone()) else {
            prop_assert!(recs.is_empty());
            return Ok(());
        };
        prop_assert_eq!(view.events.len(), recs.len());
        let instant = |at: &str, received: &str| parse_rfc3339_nanos(at).or_else(|| parse_rfc3339_nanos(received));
        for pair in view.events.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let (ia, ib) = (instant(&a.at, &a.received_at), instant(&b.at, &b.received_at));
            prop_assert!(ia < ib || (ia == ib && a.kind < b.kind), "{:?} before {:?}", a, b);
        }
        let api_phone = recs.iter().filter(|(_, m)| m.source == Source::Api).find_map(|(_, m)| m.phone_number.clone());
        if api_phone.is_some() {
            let api_phones: Vec<_> = recs.iter().filter(|(_, m)| m.source == Source::Api).filter_map(|(_, m)| m.phone_number.clone()).collect();
            prop_assert!(view.phone_number.as_ref().is_some_and(|p| api_phones.contains(p)));
        } else {
            prop_assert_eq!(view.phone_number.is_some(), recs.iter().any(|(_, m)| m.phone_number.is_some()));
        }
    }
}
