//! `pgdelta doctor` against a live source and Delta tables: all checks pass on a healthy
//! pipeline; a table missing from the publication, a replica identity of NOTHING and an
//! unreachable server are each named with their fix, and the exit code says so.

mod support;

mod harness;

use harness::{cluster_with_db, Pgdelta, DB};

const PIPELINE: &str = r#"
[pipelines.shop]
tables = ["public.items", "public.orders"]
delta_root = "DELTA_ROOT"
"#;

fn doctor(pg: &Pgdelta) -> (bool, String) {
    let output = pg.run(&["doctor", "shop"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn doctor_passes_a_healthy_pipeline_and_names_each_problem_with_its_fix() {
    let cluster = cluster_with_db();
    cluster.psql(
        DB,
        "CREATE TABLE items (id int PRIMARY KEY, v text);
         CREATE TABLE orders (id int PRIMARY KEY, item int);
         INSERT INTO items VALUES (1, 'a');",
    );
    let pg = Pgdelta::new(&cluster, PIPELINE);

    let (passed, before_start) = doctor(&pg);
    assert!(passed, "nothing created yet is no failure:\n{before_start}");
    assert!(
        before_start.contains("does not exist yet: the first start creates it"),
        "{before_start}"
    );

    pg.catch_up("shop");
    let (passed, healthy) = doctor(&pg);
    assert!(passed, "{healthy}");
    assert!(!healthy.contains("FAIL"), "{healthy}");
    for line in [
        "ok    source: connected",
        "ok    replica identity of public.items: DEFAULT, by the primary key",
        "ok    publication pgdelta_shop: holds every table of the pipeline",
        "ok    replication slot pgdelta_shop: not in use",
        "writable, holds changes up to LSN",
    ] {
        assert!(healthy.contains(line), "{line:?} missing:\n{healthy}");
    }

    cluster.psql(
        DB,
        "ALTER PUBLICATION pgdelta_shop DROP TABLE orders;
         ALTER TABLE items REPLICA IDENTITY NOTHING;",
    );
    let (passed, broken) = doctor(&pg);
    assert!(!passed, "{broken}");
    assert!(
        broken.contains("FAIL  publication pgdelta_shop: does not hold public.orders")
            && broken.contains("fix: ALTER PUBLICATION pgdelta_shop ADD TABLE public.orders"),
        "{broken}"
    );
    assert!(
        broken.contains("FAIL  replica identity of public.items: NOTHING")
            && broken.contains("fix: ALTER TABLE public.items REPLICA IDENTITY DEFAULT"),
        "{broken}"
    );

    cluster.stop_fast();
    let (passed, unreachable) = doctor(&pg);
    assert!(!passed, "{unreachable}");
    assert!(
        unreachable.contains("FAIL  source: cannot connect")
            && unreachable.contains("fix: check [source] url"),
        "{unreachable}"
    );
    assert!(
        !unreachable.contains(&format!(":{}@", support::PG_PASSWORD)),
        "the password never shows: {unreachable}"
    );
}
