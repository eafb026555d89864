//! A TradingView UDF datafeed (`/api/v1/datafeed/...`) over the candles the
//! gateway builds and stores. History is read from the store (with what the
//! writer has not committed yet and the bar in progress laid over it) and is
//! bounded to `MAX_BARS` bars per request.

use std::sync::Arc;

use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi, param::Query, payload::Json, payload::PlainText,
};

use super::{ApiError, BadRequest, ErrorBody, api::ApiTags};
use crate::{
    event::Symbol,
    gateway::Gateway,
    market::candles::{MAX_BARS, Resolution},
};

/// The exchange name the datafeed reports for every symbol.
const EXCHANGE: &str = "TICKGATE";

pub struct Datafeed {
    gateway: Arc<Gateway>,
}

impl Datafeed {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    /// Resolves a UDF symbol (`AAPL` or `TICKGATE:AAPL`, any case).
    fn symbol(&self, name: &str) -> Result<Symbol, ApiError> {
        let bare = name.rsplit_once(':').map_or(name, |(_, bare)| bare);
        self.gateway.hub.symbols().get(bare).ok_or_else(|| {
            ApiError::not_found(
                "unknown_symbol",
                format!(
                    "unknown symbol {:?}; list symbols with /api/v1/datafeed/search",
                    name.chars().take(40).collect::<String>()
                ),
            )
        })
    }
}

/// The errors of the history operation, which reads the store.
#[derive(ApiResponse, Debug)]
#[oai(bad_request_handler = "history_bad_request")]
pub enum HistoryError {
    /// A parameter is missing or invalid.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No such symbol.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The store (SQLite or PostgreSQL) cannot be read right now; retry
    /// after `Retry-After` seconds.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] u32),
}

fn history_bad_request(error: poem::Error) -> HistoryError {
    HistoryError::BadRequest(Json(ErrorBody {
        code: "bad_request".to_owned(),
        message: error.to_string(),
    }))
}

impl From<ApiError> for HistoryError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::BadRequest(body) => Self::BadRequest(body),
            ApiError::NotFound(body) => Self::NotFound(body),
        }
    }
}

impl From<crate::store::StoreError> for HistoryError {
    fn from(error: crate::store::StoreError) -> Self {
        tracing::warn!(%error, "history read failed");
        Self::Unavailable(
            Json(ErrorBody {
                code: "store_unavailable".to_owned(),
                message: format!("the history store cannot be read: {error}"),
            }),
            1,
        )
    }
}

/// The newest values of one symbol (UDF `quotes`, the `v` object).
#[derive(Object, Default)]
pub struct QuoteValues {
    /// Last price.
    #[oai(skip_serializing_if_is_none)]
    pub lp: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    pub bid: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    pub ask: Option<f64>,
    /// Change since the session opened.
    #[oai(skip_serializing_if_is_none)]
    pub ch: Option<f64>,
    /// Change in percent.
    #[oai(skip_serializing_if_is_none)]
    pub chp: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    pub open_price: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    pub high_price: Option<f64>,
    #[oai(skip_serializing_if_is_none)]
    pub low_price: Option<f64>,
    /// Volume since the session opened.
    #[oai(skip_serializing_if_is_none)]
    pub volume: Option<u64>,
    #[oai(skip_serializing_if_is_none)]
    pub short_name: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub exchange: Option<String>,
    /// Time of the quote, unix seconds.
    #[oai(skip_serializing_if_is_none)]
    pub time: Option<i64>,
    /// Why there is no quote (with `s: error`).
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<String>,
}

/// One symbol's entry of the UDF `quotes` answer.
#[derive(Object)]
pub struct QuoteEntry {
    /// `ok`, or `error` for an unknown symbol or one without a tick yet.
    pub s: String,
    /// The symbol as asked.
    pub n: String,
    pub v: QuoteValues,
}

/// The UDF `quotes` answer.
#[derive(Object)]
pub struct Quotes {
    /// `ok`.
    pub s: String,
    pub d: Vec<QuoteEntry>,
}

/// An exchange filter of the symbol search.
#[derive(Object)]
pub struct Exchange {
    pub value: String,
    pub name: String,
    pub desc: String,
}

/// A symbol type filter of the symbol search.
#[derive(Object)]
pub struct SymbolType {
    pub name: String,
    pub value: String,
}

/// The datafeed's capabilities (UDF `config`).
#[derive(Object)]
pub struct DatafeedConfig {
    pub supported_resolutions: Vec<String>,
    pub supports_group_request: bool,
    pub supports_marks: bool,
    pub supports_search: bool,
    pub supports_timescale_marks: bool,
    pub supports_time: bool,
    pub exchanges: Vec<Exchange>,
    pub symbols_types: Vec<SymbolType>,
}

/// A symbol's description (UDF `symbols`).
#[derive(Object)]
pub struct SymbolInfo {
    pub name: String,
    pub ticker: String,
    pub description: String,
    #[oai(rename = "type")]
    pub kind: String,
    pub session: String,
    pub exchange: String,
    pub listed_exchange: String,
    pub timezone: String,
    pub format: String,
    pub minmov: u32,
    pub pricescale: u32,
    pub has_intraday: bool,
    pub has_daily: bool,
    pub has_weekly_and_monthly: bool,
    pub supported_resolutions: Vec<String>,
    pub volume_precision: u32,
    pub data_status: String,
}

/// One search result (UDF `search`).
#[derive(Object)]
pub struct SearchResult {
    pub symbol: String,
    pub full_name: String,
    pub description: String,
    pub exchange: String,
    pub ticker: String,
    #[oai(rename = "type")]
    pub kind: String,
}

/// Bars (UDF `history`): `s` is `ok` with parallel arrays, or `no_data`
/// (with `nextTime`, the start of the newest earlier bar, when there is one).
#[derive(Object)]
pub struct History {
    /// `ok` or `no_data`.
    pub s: String,
    /// Bar start times, unix seconds.
    #[oai(skip_serializing_if_is_none)]
    pub t: Option<Vec<i64>>,
    #[oai(skip_serializing_if_is_none)]
    pub o: Option<Vec<f64>>,
    #[oai(skip_serializing_if_is_none)]
    pub h: Option<Vec<f64>>,
    #[oai(skip_serializing_if_is_none)]
    pub l: Option<Vec<f64>>,
    #[oai(skip_serializing_if_is_none)]
    pub c: Option<Vec<f64>>,
    #[oai(skip_serializing_if_is_none)]
    pub v: Option<Vec<u64>>,
    /// With `no_data`: where earlier data ends.
    #[oai(rename = "nextTime", skip_serializing_if_is_none)]
    pub next_time: Option<i64>,
}

/// A bar resolution, as UDF names it.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdfResolution {
    #[oai(rename = "1")]
    Minute1,
    #[oai(rename = "5")]
    Minute5,
    #[oai(rename = "15")]
    Minute15,
    #[oai(rename = "60")]
    Minute60,
    #[oai(rename = "240")]
    Minute240,
    #[oai(rename = "1D")]
    Day1,
    #[oai(rename = "D")]
    Day,
    #[oai(rename = "1W")]
    Week1,
    #[oai(rename = "W")]
    Week,
}

impl From<UdfResolution> for Resolution {
    fn from(value: UdfResolution) -> Self {
        match value {
            UdfResolution::Minute1 => Resolution::M1,
            UdfResolution::Minute5 => Resolution::M5,
            UdfResolution::Minute15 => Resolution::M15,
            UdfResolution::Minute60 => Resolution::H1,
            UdfResolution::Minute240 => Resolution::H4,
            UdfResolution::Day1 | UdfResolution::Day => Resolution::D1,
            UdfResolution::Week1 | UdfResolution::Week => Resolution::W1,
        }
    }
}

fn resolutions() -> Vec<String> {
    Resolution::SUPPORTED
        .iter()
        .map(|r| (*r).to_owned())
        .collect()
}

#[OpenApi(tag = "ApiTags::Datafeed")]
impl Datafeed {
    /// Datafeed configuration (UDF root)
    ///
    /// The same document as `/datafeed/config`, for UDF clients that read
    /// the bare datafeed URL.
    #[oai(path = "/datafeed", method = "get", operation_id = "getDatafeed")]
    async fn root(&self) -> Json<DatafeedConfig> {
        self.config().await
    }

    /// Datafeed configuration
    ///
    /// Supported resolutions and features, exchanges and symbol types.
    #[oai(
        path = "/datafeed/config",
        method = "get",
        operation_id = "getDatafeedConfig"
    )]
    async fn config(&self) -> Json<DatafeedConfig> {
        Json(DatafeedConfig {
            supported_resolutions: resolutions(),
            supports_group_request: false,
            supports_marks: false,
            supports_search: true,
            supports_timescale_marks: false,
            supports_time: true,
            exchanges: vec![
                Exchange {
                    value: String::new(),
                    name: "All Exchanges".into(),
                    desc: String::new(),
                },
                Exchange {
                    value: EXCHANGE.into(),
                    name: EXCHANGE.into(),
                    desc: "tickgate".into(),
                },
            ],
            symbols_types: vec![
                SymbolType {
                    name: "All types".into(),
                    value: String::new(),
                },
                SymbolType {
                    name: "Stock".into(),
                    value: "stock".into(),
                },
            ],
        })
    }

    /// Symbol description
    ///
    /// How TradingView should display and query one symbol.
    #[oai(
        path = "/datafeed/symbols",
        method = "get",
        operation_id = "getDatafeedSymbol"
    )]
    async fn symbols(
        &self,
        /// The symbol, e.g. `AAPL` or `TICKGATE:AAPL`.
        #[oai(validator(min_length = 1, max_length = 64))]
        symbol: Query<String>,
    ) -> Result<Json<SymbolInfo>, ApiError> {
        let symbol = self.symbol(&symbol.0)?;
        Ok(Json(SymbolInfo {
            name: symbol.to_string(),
            ticker: symbol.to_string(),
            description: symbol.to_string(),
            kind: "stock".into(),
            session: "24x7".into(),
            exchange: EXCHANGE.into(),
            listed_exchange: EXCHANGE.into(),
            timezone: "Etc/UTC".into(),
            format: "price".into(),
            minmov: 1,
            pricescale: 100,
            has_intraday: true,
            has_daily: true,
            has_weekly_and_monthly: true,
            supported_resolutions: resolutions(),
            volume_precision: 0,
            data_status: "streaming".into(),
        }))
    }

    /// Symbol search
    ///
    /// Symbols whose name contains `query`, in alphabetical order.
    #[oai(
        path = "/datafeed/search",
        method = "get",
        operation_id = "searchDatafeedSymbols"
    )]
    async fn search(
        &self,
        /// Case-insensitive substring of the symbol; empty matches all.
        #[oai(default, validator(max_length = 64))]
        query: Query<String>,
        /// Symbol type filter (`stock`, or empty for all).
        #[oai(default, name = "type", validator(max_length = 32))]
        kind: Query<String>,
        /// Exchange filter (`TICKGATE`, or empty for all).
        #[oai(default, validator(max_length = 32))]
        exchange: Query<String>,
        /// Most results, 1 to 100.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        limit: Query<u32>,
    ) -> Result<Json<Vec<SearchResult>>, BadRequest> {
        let query = query.0.to_ascii_uppercase();
        let matches_filters = (kind.0.is_empty() || kind.0.eq_ignore_ascii_case("stock"))
            && (exchange.0.is_empty() || exchange.0.eq_ignore_ascii_case(EXCHANGE));
        let results = self
            .gateway
            .hub
            .symbols()
            .all()
            .into_iter()
            .filter(|symbol| matches_filters && symbol.contains(query.as_str()))
            .take(limit.0 as usize)
            .map(|symbol| SearchResult {
                symbol: symbol.to_string(),
                full_name: format!("{EXCHANGE}:{symbol}"),
                description: symbol.to_string(),
                exchange: EXCHANGE.into(),
                ticker: symbol.to_string(),
                kind: "stock".into(),
            })
            .collect();
        Ok(Json(results))
    }

    /// Bars
    ///
    /// Bars whose start lies in `[from, to)`, oldest first, at most 5000 (the
    /// newest ones); with `countback`, the newest `countback` bars before `to`.
    #[oai(
        path = "/datafeed/history",
        method = "get",
        operation_id = "getDatafeedHistory"
    )]
    async fn history(
        &self,
        /// The symbol.
        #[oai(validator(min_length = 1, max_length = 64))]
        symbol: Query<String>,
        /// The bar resolution: 1, 5, 15, 60, 240 (minutes), 1D or D, 1W or W.
        resolution: Query<UdfResolution>,
        /// Start, unix seconds (inclusive); must not exceed `to` unless `countback` is given.
        from: Query<i64>,
        /// End, unix seconds (exclusive).
        to: Query<i64>,
        /// Bars wanted before `to`, 1 to 5000; overrides `from`.
        #[oai(validator(minimum(value = "1"), maximum(value = "5000")))]
        countback: Query<Option<u32>>,
    ) -> Result<Json<History>, HistoryError> {
        let symbol = self.symbol(&symbol.0)?;
        let resolution = Resolution::from(resolution.0);
        if countback.0.is_none() && from.0 > to.0 {
            return Err(ApiError::bad_request(
                "bad_range",
                format!("from ({}) is after to ({}); swap them", from.0, to.0),
            )
            .into());
        }
        let (from, limit) = match countback.0 {
            Some(count) => (i64::MIN, count as usize),
            None => (from.0, MAX_BARS),
        };
        let bars = self
            .gateway
            .candles
            .history(&symbol, resolution, from, to.0, limit)
            .await?;
        if bars.is_empty() {
            let before = if from == i64::MIN { to.0 } else { from };
            return Ok(Json(History {
                s: "no_data".into(),
                t: None,
                o: None,
                h: None,
                l: None,
                c: None,
                v: None,
                next_time: self
                    .gateway
                    .candles
                    .last_time_before(&symbol, resolution, before)
                    .await?,
            }));
        }
        Ok(Json(History {
            s: "ok".into(),
            t: Some(bars.iter().map(|b| b.time).collect()),
            o: Some(bars.iter().map(|b| b.open).collect()),
            h: Some(bars.iter().map(|b| b.high).collect()),
            l: Some(bars.iter().map(|b| b.low).collect()),
            c: Some(bars.iter().map(|b| b.close).collect()),
            v: Some(bars.iter().map(|b| b.volume).collect()),
            next_time: None,
        }))
    }

    /// Latest quotes
    ///
    /// The newest tick of each symbol (UDF `quotes`). With Redis, a gateway
    /// that just started answers from the shared latest-quote cache. A
    /// symbol that is unknown or has no tick yet gets an entry with
    /// `s: error`.
    #[oai(
        path = "/datafeed/quotes",
        method = "get",
        operation_id = "getDatafeedQuotes"
    )]
    async fn quotes(
        &self,
        /// Comma-separated symbols, e.g. `AAPL,TICKGATE:MSFT` (at most 100).
        #[oai(validator(min_length = 1, max_length = 4096))]
        symbols: Query<String>,
    ) -> Result<Json<Quotes>, BadRequest> {
        let names: Vec<&str> = symbols
            .0
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() || names.len() > 100 {
            return Err(BadRequest::BadRequest(Json(ErrorBody {
                code: "bad_request".into(),
                message: format!("symbols names {} symbols; give 1 to 100", names.len()),
            })));
        }
        let entries = names
            .into_iter()
            .map(|name| {
                let tick = self.symbol(name).ok().and_then(|symbol| {
                    let key = crate::event::TopicKey::Symbol(symbol.clone());
                    let event = self
                        .gateway
                        .hub
                        .last_event(crate::spec::messages::Channel::MarketData, &key)?;
                    match &event.payload {
                        crate::event::Payload::Tick(tick) => {
                            Some((symbol, event.timestamp, tick.clone()))
                        }
                        _ => None,
                    }
                });
                match tick {
                    Some((symbol, at, tick)) => QuoteEntry {
                        s: "ok".into(),
                        n: name.to_owned(),
                        v: QuoteValues {
                            lp: Some(tick.price),
                            bid: Some(tick.bid),
                            ask: Some(tick.ask),
                            ch: Some(tick.change),
                            chp: Some(tick.change_percent),
                            open_price: Some(tick.open),
                            high_price: Some(tick.high),
                            low_price: Some(tick.low),
                            volume: Some(tick.volume),
                            short_name: Some(symbol.to_string()),
                            exchange: Some(EXCHANGE.into()),
                            time: Some(at.as_second()),
                            error: None,
                        },
                    },
                    None => QuoteEntry {
                        s: "error".into(),
                        n: name.to_owned(),
                        v: QuoteValues {
                            error: Some("unknown symbol, or no tick yet".into()),
                            ..QuoteValues::default()
                        },
                    },
                }
            })
            .collect();
        Ok(Json(Quotes {
            s: "ok".into(),
            d: entries,
        }))
    }

    /// Server time
    ///
    /// Unix seconds, as plain text.
    #[oai(
        path = "/datafeed/time",
        method = "get",
        operation_id = "getDatafeedTime"
    )]
    async fn time(&self) -> PlainText<String> {
        PlainText(self.gateway.clock.now().as_second().to_string())
    }
}

fn default_limit() -> u32 {
    30
}
