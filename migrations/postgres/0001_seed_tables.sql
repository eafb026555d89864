-- The tables of seed 001 (enhanced WebSocket service), with their columns.
-- Differences, each deliberate (README "Storage"):
--   * prices are DOUBLE PRECISION, not DECIMAL(12,6): a stored value is the
--     value tickgate sent, bit for bit, so a stored higher-timeframe bar equals
--     the aggregate of its stored 1m bars exactly; reads CAST, so a table
--     created by the seed's own DDL (DECIMAL) works too;
--   * symbol is VARCHAR(32) (tickgate symbols reach 32 characters);
--   * volume is BIGINT (a weekly bar's volume passes 2^31);
--   * market_data has a `timeframe` column (1m, 5m, 15m, 1h, 4h, 1D, 1W;
--     '5m', seed 001's only bar size, by default) and it is part of the
--     unique key, so one table holds every timeframe.
CREATE TABLE IF NOT EXISTS market_data (
    id BIGSERIAL PRIMARY KEY,
    symbol VARCHAR(32) NOT NULL,
    datetime TIMESTAMP WITH TIME ZONE NOT NULL,
    open DOUBLE PRECISION,
    high DOUBLE PRECISION,
    low DOUBLE PRECISION,
    close DOUBLE PRECISION,
    volume BIGINT DEFAULT 0,
    source VARCHAR(50),
    timeframe VARCHAR(8) NOT NULL DEFAULT '5m',
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    UNIQUE (symbol, datetime, source, timeframe)
);

-- History: one symbol and timeframe, a time range, newest first.
CREATE INDEX IF NOT EXISTS market_data_symbol_timeframe_datetime
    ON market_data (symbol, timeframe, datetime);
-- Restart: every symbol's bar of one timeframe at one time.
CREATE INDEX IF NOT EXISTS market_data_timeframe_datetime
    ON market_data (timeframe, datetime);

CREATE TABLE IF NOT EXISTS realtime_market_data (
    id BIGSERIAL PRIMARY KEY,
    symbol VARCHAR(32) NOT NULL,
    time TIMESTAMP WITH TIME ZONE NOT NULL,
    bid DOUBLE PRECISION,
    ask DOUBLE PRECISION,
    last DOUBLE PRECISION,
    volume BIGINT DEFAULT 0,
    spread DOUBLE PRECISION,
    session_date DATE,
    trading_session BOOLEAN DEFAULT true,
    source VARCHAR(50),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

-- Several instances sharing one database all see every tick (Redis fan-out)
-- and all write it: the unique key makes the second write a no-op.
CREATE UNIQUE INDEX IF NOT EXISTS realtime_market_data_symbol_time_source
    ON realtime_market_data (symbol, time, source);

CREATE TABLE IF NOT EXISTS system_health (
    id BIGSERIAL PRIMARY KEY,
    service_name VARCHAR(100),
    status VARCHAR(50),
    details JSONB,
    response_time_ms INTEGER,
    error_message TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS system_health_service_created
    ON system_health (service_name, created_at);
