-- The tables of seed 001 in SQLite; see migrations/postgres for the
-- differences from the seed's DDL. Times are TEXT in one fixed format
-- (2025-10-15T13:47:00.000000Z), so text order is time order; DATE is
-- TEXT (2025-10-15); JSON is TEXT.
CREATE TABLE IF NOT EXISTS market_data (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol TEXT NOT NULL,
    datetime TEXT NOT NULL,
    open REAL,
    high REAL,
    low REAL,
    close REAL,
    volume INTEGER DEFAULT 0,
    source TEXT,
    timeframe TEXT NOT NULL DEFAULT '5m',
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (symbol, datetime, source, timeframe)
);

CREATE INDEX IF NOT EXISTS market_data_symbol_timeframe_datetime
    ON market_data (symbol, timeframe, datetime);
CREATE INDEX IF NOT EXISTS market_data_timeframe_datetime
    ON market_data (timeframe, datetime);

CREATE TABLE IF NOT EXISTS realtime_market_data (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    symbol TEXT NOT NULL,
    time TEXT NOT NULL,
    bid REAL,
    ask REAL,
    last REAL,
    volume INTEGER DEFAULT 0,
    spread REAL,
    session_date TEXT,
    trading_session INTEGER DEFAULT 1,
    source TEXT,
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE UNIQUE INDEX IF NOT EXISTS realtime_market_data_symbol_time_source
    ON realtime_market_data (symbol, time, source);

CREATE TABLE IF NOT EXISTS system_health (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service_name TEXT,
    status TEXT,
    details TEXT,
    response_time_ms INTEGER,
    error_message TEXT,
    created_at TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX IF NOT EXISTS system_health_service_created
    ON system_health (service_name, created_at);
