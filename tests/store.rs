//! Storage against real databases: each test runs on a fresh SQLite file and
//! on a fresh PostgreSQL database of the machine's server.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use sqlx::{Connection, PgConnection, Row, SqliteConnection};
use tickgate::{
    clock::Clock,
    event::Symbol,
    hub::Hub,
    market::candles::{Bar, CandleBook, Resolution, aggregate},
    store::{BarRow, Store, TickRow, Writer, WriterLimits},
};

use crate::support::{TestServer, WAIT, db::TestDb, test_config};

/// Runs `$test(db)` once on SQLite and once on PostgreSQL.
macro_rules! on_both {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use crate::support::db::TestDb;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$test(TestDb::sqlite()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = TestDb::postgres().await;
                super::$test(db).await;
            }
        }
    )*};
}

on_both!(
    schema_has_the_seed_tables,
    a_fresh_database_migrates_and_migrating_again_is_a_no_op,
    a_database_of_the_earlier_migration_code_is_taken_over,
    tables_made_without_the_migrator_are_adopted,
    ticks_are_written_in_bounded_batches,
    candles_aggregate_exactly,
    a_restart_continues_the_bars_in_progress,
    an_outage_buffers_within_the_bound_and_counts_drops,
    a_restarted_gateway_keeps_its_history,
);

fn ts(text: &str) -> jiff::Timestamp {
    text.parse().expect("a timestamp")
}

fn limits(batch_rows: usize, buffer_rows: usize) -> WriterLimits {
    WriterLimits {
        batch_rows,
        buffer_rows,
        flush: Duration::from_millis(20),
        ticks: true,
    }
}

/// A migrated store and its running writer.
async fn writer(db: &TestDb, limits: WriterLimits) -> (Arc<Writer>, tokio::task::JoinHandle<()>) {
    let store = Store::open(&db.config()).expect("open the store");
    let writer = Writer::new(store, limits);
    writer.ensure_migrated().await.expect("migrations run");
    let task = tokio::spawn(writer.clone().run(Duration::from_secs(5)));
    (writer, task)
}

async fn finish(writer: &Writer, task: tokio::task::JoinHandle<()>) {
    writer.close();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("the writer finishes")
        .expect("the writer task");
}

/// Column names of `table`, read from the database's catalog.
async fn columns(db: &TestDb, table: &str) -> Vec<String> {
    let config = db.config();
    match db {
        TestDb::Sqlite { dir } => {
            let mut conn = SqliteConnection::connect(&format!(
                "sqlite://{}",
                dir.join("tickgate.db").display()
            ))
            .await
            .expect("open SQLite");
            sqlx::query("SELECT name FROM pragma_table_info(?)")
                .bind(table)
                .fetch_all(&mut conn)
                .await
                .expect("table info")
                .iter()
                .map(|row| row.get::<String, _>(0))
                .collect()
        }
        TestDb::Postgres { .. } => {
            let mut conn = PgConnection::connect(config.url.as_deref().expect("url"))
                .await
                .expect("connect");
            sqlx::query(
                "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1",
            )
            .bind(table)
            .fetch_all(&mut conn)
            .await
            .expect("columns")
            .iter()
            .map(|row| row.get::<String, _>(0))
            .collect()
        }
    }
}

fn tick(symbol: &str, time: jiff::Timestamp, last: f64) -> TickRow {
    TickRow {
        symbol: symbol.into(),
        time,
        bid: last - 0.01,
        ask: last + 0.01,
        last,
        volume: 100,
        source: "test".into(),
    }
}

/// One raw connection to the test database (SQLite: created if missing).
enum Raw {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

async fn raw(db: &TestDb) -> Raw {
    match db {
        TestDb::Sqlite { dir } => Raw::Sqlite(
            SqliteConnection::connect_with(
                &sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(dir.join("tickgate.db"))
                    .create_if_missing(true),
            )
            .await
            .expect("open SQLite"),
        ),
        TestDb::Postgres { .. } => Raw::Postgres(
            PgConnection::connect(db.config().url.as_deref().expect("url"))
                .await
                .expect("connect"),
        ),
    }
}

/// What `_sqlx_migrations` records: `(version, checksum, installed_on)`.
type Applied = Vec<(i64, Vec<u8>, String)>;

const APPLIED: &str = "SELECT version, checksum, CAST(installed_on AS TEXT) \
                       FROM _sqlx_migrations ORDER BY version";

async fn applied(raw: &mut Raw) -> Applied {
    match raw {
        Raw::Sqlite(conn) => sqlx::query(APPLIED)
            .fetch_all(&mut *conn)
            .await
            .expect("read _sqlx_migrations")
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect(),
        Raw::Postgres(conn) => sqlx::query(APPLIED)
            .fetch_all(&mut *conn)
            .await
            .expect("read _sqlx_migrations")
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect(),
    }
}

/// Runs a script of several statements on the raw connection.
async fn run_script(raw: &mut Raw, sql: &'static str) {
    match raw {
        Raw::Sqlite(conn) => sqlx::raw_sql(sql).execute(&mut *conn).await.map(drop),
        Raw::Postgres(conn) => sqlx::raw_sql(sql).execute(&mut *conn).await.map(drop),
    }
    .expect("run the script");
}

/// The seed tables' DDL of the test database's backend.
fn seed_sql(db: &TestDb) -> &'static str {
    match db {
        TestDb::Sqlite { .. } => include_str!("../migrations/sqlite/0001_seed_tables.sql"),
        TestDb::Postgres { .. } => include_str!("../migrations/postgres/0001_seed_tables.sql"),
    }
}

/// The versions in the backend's migration folder, in order: what a
/// migrated database must record.
fn versions(db: &TestDb) -> Vec<i64> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(db.kind());
    let mut versions: Vec<i64> = std::fs::read_dir(&dir)
        .expect("the migration folder")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let (version, rest) = name.split_once('_')?;
            rest.ends_with(".sql").then(|| version.parse().ok())?
        })
        .collect();
    versions.sort_unstable();
    assert!(!versions.is_empty(), "migrations in {}", dir.display());
    versions
}

fn recorded(applied: &Applied) -> Vec<i64> {
    applied.iter().map(|(version, _, _)| *version).collect()
}

/// One bar of AAPL written and read back through the store.
fn a_bar() -> BarRow {
    BarRow {
        symbol: "AAPL".into(),
        resolution: Resolution::M5,
        time: ts("2025-10-15T13:45:00Z"),
        open: 1.0,
        high: 3.0,
        low: 0.5,
        close: 2.0,
        volume: 7,
    }
}

async fn a_fresh_database_migrates_and_migrating_again_is_a_no_op(db: TestDb) {
    let store = Store::open(&db.config()).expect("open");
    store.migrate().await.expect("a fresh database migrates");
    let mut conn = raw(&db).await;
    let first = applied(&mut conn).await;
    assert_eq!(
        recorded(&first),
        versions(&db),
        "{}: every migration applied once",
        db.kind()
    );
    store.write(&[], &[a_bar()], &[]).await.expect("write");
    store.migrate().await.expect("migrating again");
    store.migrate().await.expect("and again");
    assert_eq!(
        applied(&mut conn).await,
        first,
        "{}: nothing re-applied, nothing recorded anew",
        db.kind()
    );
    assert_eq!(store.count("market_data").await.expect("count"), 1);
    store.close().await;
    drop(conn);
    db.drop_database().await;
}

/// Until the migration folders were embedded with `sqlx::migrate!`, the
/// store built its migrator by hand from the same file: version 1, "seed
/// tables", sqlx's checksum of the file. A database it made must be taken
/// over as it stands: nothing applied again, nothing refused.
async fn a_database_of_the_earlier_migration_code_is_taken_over(db: TestDb) {
    let earlier = sqlx::migrate::Migrator::with_migrations(vec![sqlx::migrate::Migration::new(
        1,
        "seed tables".into(),
        sqlx::migrate::MigrationType::Simple,
        sqlx::SqlSafeStr::into_sql_str(seed_sql(&db)),
        false,
    )]);
    let mut conn = raw(&db).await;
    match &mut conn {
        Raw::Sqlite(c) => earlier.run(&mut *c).await,
        Raw::Postgres(c) => earlier.run(&mut *c).await,
    }
    .expect("the earlier code's migration");
    let before = applied(&mut conn).await;
    assert_eq!(recorded(&before), [1]);

    let store = Store::open(&db.config()).expect("open");
    store
        .write(&[], &[a_bar()], &[])
        .await
        .expect("the earlier tables take writes");
    store
        .migrate()
        .await
        .expect("the embedded migrations accept the earlier database");
    let after = applied(&mut conn).await;
    assert_eq!(
        after[..1],
        before[..],
        "{}: version 1 has the same checksum and is not applied again",
        db.kind()
    );
    assert_eq!(
        recorded(&after),
        versions(&db),
        "{}: later versions applied",
        db.kind()
    );
    let bars = store
        .bars(
            &"AAPL".into(),
            Resolution::M5,
            ts("2025-10-15T00:00:00Z"),
            ts("2025-10-16T00:00:00Z"),
            10,
        )
        .await
        .expect("read");
    assert_eq!(bars, [a_bar()], "{}: the data is kept", db.kind());
    store.close().await;
    drop(conn);
    db.drop_database().await;
}

/// Tables that exist without `_sqlx_migrations` (made by the seed system's
/// own DDL, or by hand from the migration file) are adopted: the first
/// migration's `IF NOT EXISTS` leaves them and their rows alone, and the
/// database is recorded at version 1 from then on.
async fn tables_made_without_the_migrator_are_adopted(db: TestDb) {
    let mut conn = raw(&db).await;
    run_script(&mut conn, seed_sql(&db)).await;
    let store = Store::open(&db.config()).expect("open");
    store.write(&[], &[a_bar()], &[]).await.expect("write");
    store.migrate().await.expect("the tables are adopted");
    assert_eq!(
        recorded(&applied(&mut conn).await),
        versions(&db),
        "{}: recorded as migrated from then on",
        db.kind()
    );
    assert_eq!(store.count("market_data").await.expect("count"), 1);
    store.close().await;
    drop(conn);
    db.drop_database().await;
}

async fn schema_has_the_seed_tables(db: TestDb) {
    let store = Store::open(&db.config()).expect("open");
    store.migrate().await.expect("first migration");
    store.migrate().await.expect("migrating again is a no-op");
    let seed = [
        (
            "market_data",
            &[
                "id",
                "symbol",
                "datetime",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "source",
                "created_at",
                "updated_at",
            ][..],
        ),
        (
            "realtime_market_data",
            &[
                "id",
                "symbol",
                "time",
                "bid",
                "ask",
                "last",
                "volume",
                "spread",
                "session_date",
                "trading_session",
                "source",
                "created_at",
            ][..],
        ),
        (
            "system_health",
            &[
                "id",
                "service_name",
                "status",
                "details",
                "response_time_ms",
                "error_message",
                "created_at",
            ][..],
        ),
    ];
    for (table, wanted) in seed {
        let have = columns(&db, table).await;
        for column in wanted {
            assert!(
                have.iter().any(|c| c == column),
                "{}: {table}.{column} missing (have {have:?})",
                db.kind()
            );
        }
    }
    assert!(
        columns(&db, "market_data")
            .await
            .iter()
            .any(|c| c == "timeframe")
    );

    // Unique keys: a bar is upserted, a tick written twice is stored once.
    let bar = |close: f64| BarRow {
        symbol: "AAPL".into(),
        resolution: Resolution::M5,
        time: ts("2025-10-15T13:45:00Z"),
        open: 1.0,
        high: 3.0,
        low: 0.5,
        close,
        volume: 10,
    };
    let at = ts("2025-10-15T13:45:01.123456Z");
    store
        .write(&[tick("AAPL", at, 1.5)], &[bar(2.0)], &[])
        .await
        .expect("write");
    store
        .write(&[tick("AAPL", at, 1.5)], &[bar(2.5)], &[])
        .await
        .expect("write again");
    assert_eq!(store.count("market_data").await.expect("count"), 1);
    assert_eq!(store.count("realtime_market_data").await.expect("count"), 1);
    let bars = store
        .bars(
            &"AAPL".into(),
            Resolution::M5,
            ts("2025-10-15T00:00:00Z"),
            ts("2025-10-16T00:00:00Z"),
            10,
        )
        .await
        .expect("read");
    assert_eq!(
        bars,
        [bar(2.5)],
        "{}: the newest value of the bar wins",
        db.kind()
    );
    store.close().await;
    db.drop_database().await;
}

async fn ticks_are_written_in_bounded_batches(db: TestDb) {
    let (writer, task) = writer(&db, limits(100, 10_000)).await;
    let start = ts("2025-10-15T13:00:00Z");
    let rows: Vec<TickRow> = (0..1000)
        .map(|i| {
            tick(
                "MSFT",
                start + jiff::SignedDuration::from_millis(i * 10),
                300.0 + i as f64 / 100.0,
            )
        })
        .collect();
    for row in rows.iter().cloned() {
        writer.tick(row);
    }
    finish(&writer, task).await;
    let stats = writer.stats();
    assert_eq!(stats.written("realtime_market_data"), 1000, "{}", db.kind());
    assert_eq!(stats.dropped("realtime_market_data"), 0);
    assert!(
        stats.batches() >= 10,
        "1,000 rows in batches of at most 100: {}",
        stats.batches()
    );
    assert!(stats.largest_batch() <= 100 && stats.largest_batch() > 0);
    let store = writer.store();
    assert_eq!(
        store.count("realtime_market_data").await.expect("count"),
        1000
    );

    // A second instance writing the same ticks (Redis fan-out) adds nothing.
    let (again, task) = self::writer(&db, limits(100, 10_000)).await;
    for row in rows {
        again.tick(row);
    }
    finish(&again, task).await;
    assert_eq!(
        store.count("realtime_market_data").await.expect("count"),
        1000
    );
    store.close().await;
    db.drop_database().await;
}

/// Ticks whose 1m, 5m, 15m and 1h bars were computed by hand below.
const TICKS: [(&str, f64, u64); 7] = [
    ("2025-10-15T13:44:05Z", 10.0, 1),
    ("2025-10-15T13:44:30Z", 12.0, 2),
    ("2025-10-15T13:44:59Z", 11.0, 3),
    ("2025-10-15T13:45:01Z", 11.5, 4),
    ("2025-10-15T13:46:10Z", 9.25, 5),
    ("2025-10-15T13:46:20Z", 10.75, 6),
    ("2025-10-15T13:50:00Z", 13.125, 7),
];

fn bar(time: &str, open: f64, high: f64, low: f64, close: f64, volume: u64) -> Bar {
    Bar {
        time: ts(time).as_second(),
        open,
        high,
        low,
        close,
        volume,
    }
}

async fn stored(book: &CandleBook, symbol: &Symbol, resolution: Resolution) -> Vec<Bar> {
    book.history(
        symbol,
        resolution,
        0,
        ts("2030-01-01T00:00:00Z").as_second(),
        5000,
    )
    .await
    .expect("history")
}

async fn candles_aggregate_exactly(db: TestDb) {
    let hub = Arc::new(Hub::new(&Default::default(), Default::default()));
    let (writer, task) = writer(&db, limits(1000, 10_000)).await;
    let book = CandleBook::with_store(hub, writer.clone(), Clock::system());
    let symbol: Symbol = "AGG".into();
    for (time, price, size) in TICKS {
        book.on_tick(&symbol, ts(time), price, size);
    }
    book.flush(ts("2025-10-15T13:51:00Z"), false);
    book.persist();
    finish(&writer, task).await;
    // Read back through a book with nothing in memory: only the store.
    let hub = Arc::new(Hub::new(&Default::default(), Default::default()));
    let (reader, task) = self::writer(&db, limits(1000, 10_000)).await;
    let fresh = CandleBook::with_store(hub, reader.clone(), Clock::system());
    let minutes = stored(&fresh, &symbol, Resolution::M1).await;
    assert_eq!(
        minutes,
        [
            bar("2025-10-15T13:44:00Z", 10.0, 12.0, 10.0, 11.0, 6),
            bar("2025-10-15T13:45:00Z", 11.5, 11.5, 11.5, 11.5, 4),
            bar("2025-10-15T13:46:00Z", 9.25, 10.75, 9.25, 10.75, 11),
            bar("2025-10-15T13:50:00Z", 13.125, 13.125, 13.125, 13.125, 7),
        ],
        "{}",
        db.kind()
    );
    assert_eq!(
        stored(&fresh, &symbol, Resolution::M5).await,
        [
            bar("2025-10-15T13:40:00Z", 10.0, 12.0, 10.0, 11.0, 6),
            bar("2025-10-15T13:45:00Z", 11.5, 11.5, 9.25, 10.75, 15),
            bar("2025-10-15T13:50:00Z", 13.125, 13.125, 13.125, 13.125, 7),
        ]
    );
    assert_eq!(
        stored(&fresh, &symbol, Resolution::M15).await,
        [
            bar("2025-10-15T13:30:00Z", 10.0, 12.0, 10.0, 11.0, 6),
            bar("2025-10-15T13:45:00Z", 11.5, 13.125, 9.25, 13.125, 22),
        ]
    );
    let whole = bar("2025-10-15T13:00:00Z", 10.0, 13.125, 9.25, 13.125, 28);
    assert_eq!(stored(&fresh, &symbol, Resolution::H1).await, [whole]);
    assert_eq!(
        stored(&fresh, &symbol, Resolution::H4).await,
        [Bar {
            time: ts("2025-10-15T12:00:00Z").as_second(),
            ..whole
        }]
    );
    assert_eq!(
        stored(&fresh, &symbol, Resolution::D1).await,
        [Bar {
            time: ts("2025-10-15T00:00:00Z").as_second(),
            ..whole
        }]
    );
    assert_eq!(
        stored(&fresh, &symbol, Resolution::W1).await,
        [Bar {
            time: ts("2025-10-13T00:00:00Z").as_second(),
            ..whole
        }],
        "weeks start on Monday 00:00 UTC"
    );
    finish(&reader, task).await;
    reader.store().close().await;
    writer.store().close().await;
    db.drop_database().await;
}

/// Every stored bar of every resolution equals the aggregate of the stored
/// 1-minute bars of its period, exactly.
async fn assert_consistent(book: &CandleBook, symbol: &Symbol) {
    let minutes: Vec<tickgate::event::Candle> = stored(book, symbol, Resolution::M1)
        .await
        .into_iter()
        .map(|bar| tickgate::event::Candle {
            time: jiff::Timestamp::from_second(bar.time).expect("time"),
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            volume: bar.volume,
            closed: true,
        })
        .collect();
    for resolution in Resolution::ALL {
        assert_eq!(
            stored(book, symbol, resolution).await,
            aggregate(&minutes, resolution),
            "{}",
            resolution.name()
        );
    }
}

async fn a_restart_continues_the_bars_in_progress(db: TestDb) {
    let symbol: Symbol = "RST".into();
    {
        let hub = Arc::new(Hub::new(&Default::default(), Default::default()));
        let (writer, task) = writer(&db, limits(1000, 10_000)).await;
        let book = CandleBook::with_store(hub, writer.clone(), Clock::system());
        for (time, price, size) in &TICKS[..6] {
            book.on_tick(&symbol, ts(time), *price, *size);
        }
        book.persist();
        finish(&writer, task).await;
        writer.store().close().await;
    }
    let hub = Arc::new(Hub::new(&Default::default(), Default::default()));
    let (writer, task) = writer(&db, limits(1000, 10_000)).await;
    let book = CandleBook::with_store(hub, writer.clone(), Clock::system());
    let restored = book
        .restore(ts("2025-10-15T13:46:40Z"))
        .await
        .expect("restore");
    assert_eq!(
        restored,
        7,
        "{}: one bar in progress per resolution",
        db.kind()
    );
    book.on_tick(&symbol, ts("2025-10-15T13:46:50Z"), 8.5, 10);
    let minute = book.current(&symbol).expect("the minute continues");
    assert_eq!(
        (
            minute.open,
            minute.high,
            minute.low,
            minute.close,
            minute.volume
        ),
        (9.25, 10.75, 8.5, 8.5, 21),
        "the 13:46 candle continued, not started afresh"
    );
    assert_eq!(
        book.open_bar(&symbol, Resolution::H1),
        Some(bar("2025-10-15T13:00:00Z", 10.0, 12.0, 8.5, 8.5, 31))
    );
    book.flush(ts("2025-10-15T13:47:00Z"), true);
    book.persist();
    finish(&writer, task).await;
    let (reader, task) = self::writer(&db, limits(1000, 10_000)).await;
    let fresh = CandleBook::with_store(
        Arc::new(Hub::new(&Default::default(), Default::default())),
        reader.clone(),
        Clock::system(),
    );
    assert_consistent(&fresh, &symbol).await;
    finish(&reader, task).await;
    reader.store().close().await;
    writer.store().close().await;
    db.drop_database().await;
}

async fn an_outage_buffers_within_the_bound_and_counts_drops(db: TestDb) {
    let (writer, task) = writer(&db, limits(50, 100)).await;
    let start = ts("2025-10-15T13:00:00Z");
    let at = |i: i64| start + jiff::SignedDuration::from_millis(i);
    for i in 0..20 {
        writer.tick(tick("OUT", at(i), 1.0));
    }
    // Everything before the outage is written.
    let store = writer.store().clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    while writer.stats().written("realtime_market_data") < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first rows are written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outage = db.outage().await;
    for i in 20..170 {
        writer.tick(tick("OUT", at(i), 1.0));
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while writer.stats().failures() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: the outage is noticed",
            db.kind()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(writer.stats().is_down());
    assert_eq!(
        writer.stats().dropped("realtime_market_data"),
        50,
        "150 rows against a bound of 100: 50 dropped and counted"
    );
    assert_eq!(
        writer.buffered(),
        100,
        "the bound holds while the database is down"
    );
    db.recover(outage).await;
    finish(&writer, task).await;
    let stats = writer.stats();
    assert!(!stats.is_down(), "writes resumed");
    assert_eq!(stats.written("realtime_market_data"), 120);
    assert_eq!(
        store.count("realtime_market_data").await.expect("count"),
        120,
        "{}",
        db.kind()
    );
    assert_eq!(writer.buffered(), 0);
    store.close().await;
    db.drop_database().await;
}

/// Stored weekly bars of AAPL, read through the store itself.
async fn weekly_bars(db: &TestDb) -> i64 {
    let store = Store::open(&db.config()).expect("open");
    let count = store
        .count_bars(&"AAPL".into(), Resolution::W1)
        .await
        .expect("count");
    store.close().await;
    count
}

async fn a_restarted_gateway_keeps_its_history(db: TestDb) {
    let mut config = test_config();
    config.store = db.config();
    config.store.flush_ms = 20;
    let server = TestServer::start(config.clone()).await;
    let history =
        "/api/v1/datafeed/history?symbol=AAPL&resolution=1D&countback=5000&from=0&to=4000000000";
    let (status, before) = server.get_json(history).await;
    assert_eq!(status, 200, "{before}");
    let days = before["t"].as_array().expect("bars").len();
    assert!(
        days >= 150,
        "{}: backfilled daily bars at once: {days}",
        db.kind()
    );
    // Live ticks arrive and are written.
    let deadline = tokio::time::Instant::now() + WAIT;
    while server
        .gateway
        .writer
        .stats()
        .written("realtime_market_data")
        < 5
    {
        assert!(tokio::time::Instant::now() < deadline, "ticks are stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await.expect("clean stop");
    let weekly = weekly_bars(&db).await;
    assert!(
        weekly >= 150,
        "{}: weekly bars backfilled: {weekly}",
        db.kind()
    );
    let (_, stopped) = {
        let server = TestServer::start(config.clone()).await;
        let answer = server.get_json(history).await;
        server.stop().await.expect("clean stop");
        answer
    };
    assert_eq!(weekly_bars(&db).await, weekly, "no second backfill");
    let last = |body: &Value, key: &str| body[key].as_array().and_then(|a| a.last().cloned());
    assert_eq!(
        last(&stopped, "t"),
        last(&before, "t"),
        "the same day continues"
    );
    assert_eq!(last(&stopped, "o"), last(&before, "o"), "its open is kept");
    assert!(
        last(&stopped, "v").and_then(|v| v.as_u64()) >= last(&before, "v").and_then(|v| v.as_u64()),
        "its volume continues: {:?} then {:?}",
        last(&before, "v"),
        last(&stopped, "v")
    );
    assert_eq!(stopped["t"].as_array().map(Vec::len), Some(days));
    db.drop_database().await;
}

/// Polls `/api/v1/health` until its status is `status`; returns the body.
async fn wait_for_health(server: &TestServer, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (code, body) = server.get_json("/api/v1/health").await;
        assert_eq!(code, 200, "health answers 200 whatever the store does");
        if body["status"] == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health never became {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_answers_503_while_postgres_is_down() {
    let db = TestDb::postgres().await;
    let mut config = test_config();
    config.store = db.config();
    config.simulator.backfill_bars = 10;
    let server = TestServer::start(config).await;
    let history =
        "/api/v1/datafeed/history?symbol=AAPL&resolution=5&countback=10&from=0&to=4000000000";
    assert_eq!(server.get_json(history).await.0, 200);
    let outage = db.outage().await;
    let response = server.get(history).await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["code"], "store_unavailable", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    // Live ticks keep coming; their write fails and health says so.
    let health = wait_for_health(&server, "degraded").await;
    assert_eq!(health["store"]["writing"], false, "{health}");
    assert!(
        health["store"]["buffered_rows"].as_u64() > Some(0),
        "{health}"
    );
    db.recover(outage).await;
    let health = wait_for_health(&server, "healthy").await;
    assert_eq!(health["store"]["kind"], "postgres");
    assert_eq!(
        health["store"]["dropped_rows"], 0,
        "nothing was dropped: {health}"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if server.get_json(history).await.0 == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history answers again after recovery"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await.expect("clean stop");
    db.drop_database().await;
}
