#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs, dead_code)]
//! MVCC-3: a read view is fixed for the whole read; range reads use one
//! view; commits applied meanwhile do not change what it sees.

mod common;

use std::sync::Arc;

use aerodb_mvcc::{ReadView, Store, Visible};
use aerodb_wal::CommitId;
use common::{apply_next, commit, del, fresh_engine, op_del, op_put, put};

type Item = (Vec<u8>, CommitId, Vec<u8>);

fn scan_all_pages(view: &ReadView, page_size: usize, between_pages: &mut dyn FnMut(usize)) -> Vec<Item> {
    let mut out = Vec::new();
    let mut start: Option<Vec<u8>> = None;
    let mut page_no = 0;
    loop {
        let page = view.scan(b"c", start.as_deref(), None, page_size);
        out.extend(page.items.iter().map(|(k, c, d)| (k.to_vec(), *c, d.to_vec())));
        match page.next {
            Some(next) => start = Some(next.to_vec()),
            None => return out,
        }
        between_pages(page_no);
        page_no += 1;
    }
}

fn point_reads(view: &ReadView, keys: &[String]) -> Vec<Option<Visible>> {
    keys.iter().map(|k| view.get(b"c", k.as_bytes())).collect()
}

/// One commit that overwrites, deletes, re-creates and inserts keys on
/// both sides of a scan cursor.
fn mutate_around_cursor(store: &Store, n: u32) {
    apply_next(
        store,
        &[
            op_put("c", "k00", &format!("{{\"overwritten\":{n}}}")),
            op_del("c", &format!("k{:02}", (n * 3 + 7) % 20)),
            op_put("c", "k05", "{\"recreated\":true}"),
            op_put("c", &format!("k{:02}a", (n * 5) % 20), "{\"inserted\":true}"),
            op_put("c", &format!("k{:02}", 20 + n % 5), "{\"appended\":true}"),
        ],
    );
}

/// MVCC-3: a view pinned at R answers point reads and a paginated scan
/// identically while later commits overwrite, delete and insert keys on
/// both sides of the scan cursor between pages.
#[test]
fn mvcc_3_pinned_view_is_unchanged_by_commits_applied_between_pages() {
    let store = Arc::new(Store::new());
    for i in 0..20 {
        apply_next(&store, &[op_put("c", &format!("k{i:02}"), &format!("{{\"v\":{i}}}"))]);
    }
    apply_next(&store, &[op_del("c", "k05"), op_del("c", "k15")]);
    let r = store.applied().commit_id;
    let view = store.read_view(Some(r)).unwrap();
    assert_eq!(store.active_read_views(), vec![(r, 1)]);

    let keys: Vec<String> = (0..25).map(|i| format!("k{i:02}")).chain(["k05a".to_string(), "k10a".into()]).collect();
    let points_before = point_reads(&view, &keys);
    let full_before: Vec<Item> = view.scan(b"c", None, None, usize::MAX).items.iter().map(|(k, c, d)| (k.to_vec(), *c, d.to_vec())).collect();
    assert_eq!(full_before.len(), 18);

    // Between every page: overwrite, delete, re-create and insert keys
    // before and after the cursor.
    let writer = store.clone();
    let mut mutate = |page_no: usize| mutate_around_cursor(&writer, page_no as u32);
    let paged = scan_all_pages(&view, 4, &mut mutate);
    assert!(store.applied().commit_id >= r + 4, "commits were applied while the view was open");
    assert_eq!(paged, full_before, "a paginated scan on one view sees one state");
    assert_eq!(point_reads(&view, &keys), points_before, "point reads on the pinned view are unchanged");
    assert_eq!(view.scan(b"c", None, None, usize::MAX).items.len(), 18);

    // A view opened later at the same R sees the same state (MVCC-1 is a
    // pure function of R), while a view at the new head sees the changes.
    let again = store.read_view(Some(r)).unwrap();
    assert_eq!(point_reads(&again, &keys), points_before);
    assert_eq!(store.active_read_views(), vec![(r, 2)]);
    let head = store.read_view(None).unwrap();
    assert!(head.get(b"c", b"k05").unwrap().doc.is_some(), "the head sees k05 re-created");
    assert_ne!(point_reads(&head, &keys), points_before);
    drop((view, again, head));
    assert!(store.active_read_views().is_empty(), "dropping views unregisters them");
}

/// MVCC-3: the same through the primary's commit path, with concurrent
/// committers running while one view is paged through on this thread.
#[test]
fn mvcc_3_pinned_view_is_stable_while_the_primary_commits_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(fresh_engine(dir.path()));
    let keys: Vec<String> = (0..40).map(|i| format!("k{i:02}")).collect();
    commit(&engine, keys.iter().map(|k| put("c", k, "{\"gen\":0}")).collect());
    let view = engine.store().read_view(None).unwrap();
    assert_eq!(view.read_upper_bound(), 1);
    let points_before = point_reads(&view, &keys);
    let full_before: Vec<Item> = view.scan(b"c", None, None, usize::MAX).items.iter().map(|(k, c, d)| (k.to_vec(), *c, d.to_vec())).collect();

    let writers: Vec<_> = (0..3u32)
        .map(|w| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for g in 1..=20u32 {
                    let k = (w * 13 + g * 7) % 40;
                    let ops = if g % 4 == 0 {
                        vec![del("c", &format!("k{k:02}"))]
                    } else {
                        vec![put("c", &format!("k{k:02}"), &format!("{{\"gen\":{g},\"w\":{w}}}")), put("c", &format!("k{k:02}x"), "{}")]
                    };
                    commit(&engine, ops);
                }
            })
        })
        .collect();
    let mut rounds = 0;
    // Keep paging through the pinned view until every writer finished, then once more.
    loop {
        let finished = writers.iter().all(|w| w.is_finished());
        let paged = scan_all_pages(&view, 7, &mut |_| {});
        assert_eq!(paged, full_before);
        assert_eq!(point_reads(&view, &keys), points_before);
        rounds += 1;
        if finished {
            break;
        }
    }
    for w in writers {
        w.join().unwrap();
    }
    assert!(rounds >= 1);
    assert_eq!(engine.store().applied().commit_id, 61);
    assert_eq!(view.read_upper_bound(), 1);
}
