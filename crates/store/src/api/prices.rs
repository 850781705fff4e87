//! Price versions: appended, never changed; the one in force is chosen by time.

use creditgate_domain::pricing::{LongInput, PriceVersion, TokenPrices, TokenRates};

use crate::codec::Columns;
use crate::sql::{values, Row};
use crate::{Store, StoreError};

const PRICE_COLUMNS: &str = "id, model, effective_at, input, output, cache_write, cache_read, \
     request_fee, max_output_tokens, created_at, cache_write_1h, web_search_request, \
     web_fetch_request, long_above_input_tokens, long_input, long_output, long_cache_write, \
     long_cache_write_1h, long_cache_read";

/// The long-input rates of a row: all six columns set, or none.
fn long_input(row: &Row) -> Result<Option<LongInput>, StoreError> {
    let Some(above) = row.opt_int(13)? else {
        return Ok(None);
    };
    let rate = |index: usize| {
        row.opt_amount(index)?
            .ok_or_else(|| StoreError::Corrupt("long-input rates".into()))
    };
    Ok(Some(LongInput {
        above_input_tokens: u64::try_from(above)
            .map_err(|_| StoreError::Corrupt("long_above_input_tokens".into()))?,
        rates: TokenRates {
            input: rate(14)?,
            output: rate(15)?,
            cache_write: rate(16)?,
            cache_write_1h: rate(17)?,
            cache_read: rate(18)?,
        },
    }))
}

fn price_row(row: &Row) -> Result<PriceVersion, StoreError> {
    Ok(PriceVersion {
        id: row.text(0)?,
        model: row.text(1)?,
        effective_at: row.time(2)?,
        prices: TokenPrices {
            input: row.amount(3)?,
            output: row.amount(4)?,
            cache_write: row.amount(5)?,
            cache_read: row.amount(6)?,
            request_fee: row.amount(7)?,
            // Written NULL by a node from before migration 0010: its one cache-write rate.
            cache_write_1h: match row.opt_amount(10)? {
                Some(rate) => rate,
                None => row.amount(5)?,
            },
            web_search_request: row.amount(11)?,
            web_fetch_request: row.amount(12)?,
            long_input: long_input(row)?,
        },
        max_output_tokens: u64::try_from(row.int(8)?)
            .map_err(|_| StoreError::Corrupt("max_output_tokens".into()))?,
        created_at: row.time(9)?,
    })
}

impl Store {
    /// Appends a price version.
    pub async fn insert_price(&self, price: &PriceVersion) -> Result<(), StoreError> {
        let p = &price.prices;
        let long = p.long_input;
        let long_rate = |rate: fn(&TokenRates) -> creditgate_domain::Amount| {
            long.map(|l| rate(&l.rates).micros())
        };
        self.db()
            .execute(
                &format!(
                    "INSERT INTO prices ({PRICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                     $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
                ),
                &values![
                    price.id.as_str(),
                    price.model.as_str(),
                    price.effective_at.unix_ms(),
                    p.input.micros(),
                    p.output.micros(),
                    p.cache_write.micros(),
                    p.cache_read.micros(),
                    p.request_fee.micros(),
                    i64::try_from(price.max_output_tokens).unwrap_or(i64::MAX),
                    price.created_at.unix_ms(),
                    p.cache_write_1h.micros(),
                    p.web_search_request.micros(),
                    p.web_fetch_request.micros(),
                    long.map(|l| i64::try_from(l.above_input_tokens).unwrap_or(i64::MAX)),
                    long_rate(|r| r.input),
                    long_rate(|r| r.output),
                    long_rate(|r| r.cache_write),
                    long_rate(|r| r.cache_write_1h),
                    long_rate(|r| r.cache_read),
                ],
            )
            .await?;
        Ok(())
    }

    /// Every version of `model`'s prices.
    pub async fn price_versions(&self, model: &str) -> Result<Vec<PriceVersion>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {PRICE_COLUMNS} FROM prices WHERE model = $1 ORDER BY effective_at, created_at, id"),
                &values![model],
            )
            .await?;
        rows.iter().map(price_row).collect()
    }

    /// The version with id `id`.
    pub async fn price_version(&self, id: &str) -> Result<Option<PriceVersion>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {PRICE_COLUMNS} FROM prices WHERE id = $1"),
                &values![id],
            )
            .await?;
        rows.first().map(price_row).transpose()
    }

    /// Every version of every model, by model then time.
    pub async fn prices(&self) -> Result<Vec<PriceVersion>, StoreError> {
        let rows = self
            .db()
            .query(
                &format!("SELECT {PRICE_COLUMNS} FROM prices ORDER BY model, effective_at, created_at, id"),
                &[],
            )
            .await?;
        rows.iter().map(price_row).collect()
    }
}
