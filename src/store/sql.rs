//! Statements that run on SQLite and on PostgreSQL alike.
//!
//! Every stage writes its SQL once, against these types, in the dialect the two engines share:
//! `?N` placeholders, `INSERT … ON CONFLICT … DO NOTHING / DO UPDATE`, `RETURNING`,
//! `COALESCE`, text times in [`super::stamp`]'s fixed-width form. Values cross as SQLite's five
//! storage classes (rusqlite's `ToSql` / `FromSql`, so a stage's enums and ids bind the same
//! way on both): on PostgreSQL a value is converted to the type the server infers for its
//! placeholder (an integer into `int4`, `int8`, `bool`, `float8` or `text`) and every column
//! read comes back as one of the five (`bool` as 0/1, `numeric` as an integer when it has no
//! fraction). A stage therefore never sees which engine it runs on.
//!
//! The few spellings only SQLite knows are rewritten for PostgreSQL when a statement is first
//! prepared ([`translate`]), and the translation is cached with the prepared statement.
//!
//! On SQLite the types are thin wrappers over rusqlite's (the writer's hot statements stay
//! rusqlite's cached statements); on PostgreSQL over the synchronous `postgres` client, whose
//! statements are prepared once per connection and cached by their text.

use std::cell::RefCell;
use std::collections::HashMap;

use bytes::BufMut;
use postgres::types::{FromSql as PgFromSql, IsNull, ToSql as PgToSql, Type};
use rusqlite::types::{FromSql, ToSql, ToSqlOutput, Value, ValueRef};

/// What a statement returns.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A statement failed, on either engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite said so, or a value read from either engine did not fit the Rust type asked for.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said so (its SQLSTATE, message and detail).
    #[error("{}", pg_message(.0))]
    Postgres(postgres::Error),
    /// PostgreSQL refused a statement as written (the statement is wrong for it).
    #[error("PostgreSQL cannot prepare `{statement}`: {}", pg_message(.error))]
    Prepare {
        /// The statement, as translated, its white space folded.
        statement: String,
        /// What PostgreSQL said.
        error: postgres::Error,
    },
    /// A write apart from the store's write lock asked to hold a sequence in line (the audit
    /// chain, a cursor): such work must be an ordinary write (the code is wrong).
    #[error(
        "a write apart from the store's write lock cannot hold `{0}` in line (write it with Store::write)"
    )]
    Apart(String),
    /// PostgreSQL returned a column of a type no table here has (the statement is wrong).
    #[error("PostgreSQL column {column} has type {ty}, which stormbell does not store")]
    Unsupported {
        /// The column's name.
        column: String,
        /// Its type.
        ty: String,
    },
}

/// PostgreSQL's error as a duty officer's log should show it: the SQLSTATE, the message and
/// its detail (the client's own `Display` says only "db error").
pub(crate) fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("PostgreSQL: {}: {}", db.code().code(), db.message());
            if let Some(d) = db.detail() {
                m.push_str(&format!(" ({d})"));
            }
            m
        }
        None => format!("PostgreSQL: {e}"),
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Error {
        Error::Postgres(e)
    }
}

impl Error {
    /// Whether the statement broke a unique constraint (on either engine): what a caller that
    /// inserts a key it expects to be new (a token, an id from outside) turns into its own
    /// clear refusal.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::ConstraintViolation)
            ),
            Error::Postgres(e) => e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
            Error::Prepare { .. } | Error::Unsupported { .. } | Error::Apart(_) => false,
        }
    }

    /// Whether the query found no row ([`Conn::query_row`]).
    pub fn is_no_rows(&self) -> bool {
        matches!(self, Error::Sqlite(rusqlite::Error::QueryReturnedNoRows))
    }
}

/// `query_row(…).optional()`: no row is `None`, not an error (as rusqlite's extension of the
/// same name).
pub trait OptionalExtension<T> {
    /// `Ok(None)` for no row; other errors stay errors.
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_no_rows() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A statement's parameters: `params![…]`, an array of one type (`[id]`), or `()` for none.
pub trait Params {
    /// Hand the parameters to `f` as rusqlite's slice.
    fn with<R>(self, f: impl FnOnce(&[&dyn ToSql]) -> R) -> R;
}

impl Params for () {
    fn with<R>(self, f: impl FnOnce(&[&dyn ToSql]) -> R) -> R {
        f(&[])
    }
}

impl Params for &[&dyn ToSql] {
    fn with<R>(self, f: impl FnOnce(&[&dyn ToSql]) -> R) -> R {
        f(self)
    }
}

impl<T: ToSql, const N: usize> Params for [T; N] {
    fn with<R>(self, f: impl FnOnce(&[&dyn ToSql]) -> R) -> R {
        let refs: [&dyn ToSql; N] = std::array::from_fn(|i| &self[i] as &dyn ToSql);
        f(&refs)
    }
}

impl<T: ToSql, const N: usize> Params for &[T; N] {
    fn with<R>(self, f: impl FnOnce(&[&dyn ToSql]) -> R) -> R {
        let refs: [&dyn ToSql; N] = std::array::from_fn(|i| &self[i] as &dyn ToSql);
        f(&refs)
    }
}

/// A column by position or by name, as in rusqlite.
pub trait ColumnIndex: Copy {
    /// Read it from a SQLite row.
    fn lite<T: FromSql>(self, row: &rusqlite::Row<'_>) -> rusqlite::Result<T>;
    /// Its position among `names`.
    fn position(self, names: &[String]) -> Option<usize>;
}

impl ColumnIndex for usize {
    fn lite<T: FromSql>(self, row: &rusqlite::Row<'_>) -> rusqlite::Result<T> {
        row.get(self)
    }
    fn position(self, names: &[String]) -> Option<usize> {
        (self < names.len()).then_some(self)
    }
}

impl ColumnIndex for &str {
    fn lite<T: FromSql>(self, row: &rusqlite::Row<'_>) -> rusqlite::Result<T> {
        row.get(self)
    }
    fn position(self, names: &[String]) -> Option<usize> {
        names.iter().position(|n| n.eq_ignore_ascii_case(self))
    }
}

/// One row of a result.
pub enum Row<'r> {
    /// From SQLite.
    Lite(&'r rusqlite::Row<'r>),
    /// From PostgreSQL, already converted.
    Pg {
        /// The row's values.
        values: &'r [Value],
        /// The result's column names.
        names: &'r [String],
    },
}

impl Row<'_> {
    /// Column `idx` as `T` (an error names the column when it does not fit).
    pub fn get<I: ColumnIndex, T: FromSql>(&self, idx: I) -> Result<T> {
        match self {
            Row::Lite(r) => Ok(idx.lite(r)?),
            Row::Pg { values, names } => {
                let Some(i) = idx.position(names) else {
                    return Err(rusqlite::Error::InvalidColumnIndex(names.len()).into());
                };
                let v = &values[i];
                T::column_result(ValueRef::from(v)).map_err(|e| {
                    let name = names[i].clone();
                    Error::Sqlite(match e {
                        rusqlite::types::FromSqlError::InvalidType => {
                            rusqlite::Error::InvalidColumnType(i, name, v.data_type())
                        }
                        other => rusqlite::Error::FromSqlConversionFailure(
                            i,
                            v.data_type(),
                            Box::new(other),
                        ),
                    })
                })
            }
        }
    }
}

/// A connection on PostgreSQL, with the statements it has prepared.
pub(crate) struct Pg {
    pub(crate) client: postgres::Client,
    prepared: HashMap<String, postgres::Statement>,
    /// The audit chain's head as the current write job last appended it (see
    /// [`Tx::chain_head`]); forgotten when a job's transaction scope begins.
    chain: Option<(i64, String)>,
    /// Whether the transaction running is a write apart, without the store's write lock
    /// (see [`crate::store::Store::write_apart`]).
    pub(crate) apart: bool,
}

/// The one advisory lock every write batch on PostgreSQL takes first, held to its commit: the
/// writes of all the nodes (and of CLI commands beside them) go one batch at a time, as
/// SQLite's one writer, so two batches never wait for each other's locks in opposite orders
/// (a deadlock PostgreSQL would break by failing one of them: a write lost to its caller).
/// Reads go on beside it.
pub(crate) const WRITE_LOCK: &str = "stormbell.write";

/// [`WRITE_LOCK`]'s key.
pub(crate) fn write_lock_key() -> i64 {
    lock_key(WRITE_LOCK)
}

impl Pg {
    /// Forget the audit chain's head kept by [`Tx::chain_head`]: a transaction begins or
    /// rolls back (whole, or to a savepoint), and what it appended may be gone.
    pub(crate) fn forget_chain(&mut self) {
        self.chain = None;
    }

    /// A connection's statements start uncached.
    pub(crate) fn new(client: postgres::Client) -> Pg {
        Pg {
            client,
            prepared: HashMap::new(),
            chain: None,
            apart: false,
        }
    }

    fn prepare(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let translated = translate(sql);
        let s = self
            .client
            .prepare(&translated)
            .map_err(|error| Error::Prepare {
                statement: translated.split_whitespace().collect::<Vec<_>>().join(" "),
                error,
            })?;
        // Bounded like SQLite's cache: a statement built from data (an IN list) must not grow
        // it for ever.
        if self.prepared.len() >= 1024 {
            self.prepared.clear();
        }
        self.prepared.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    fn execute(&mut self, stmt: &postgres::Statement, params: &[&dyn ToSql]) -> Result<usize> {
        let flex = flexible(params)?;
        let refs: Vec<&(dyn PgToSql + Sync)> = flex.iter().map(|f| f as _).collect();
        Ok(self.client.execute(stmt, &refs)? as usize)
    }

    fn query(&mut self, stmt: &postgres::Statement, params: &[&dyn ToSql]) -> Result<PgRows> {
        let flex = flexible(params)?;
        let refs: Vec<&(dyn PgToSql + Sync)> = flex.iter().map(|f| f as _).collect();
        let rows = self.client.query(stmt, &refs)?;
        let names: Vec<String> = stmt.columns().iter().map(|c| c.name().to_owned()).collect();
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut values = Vec::with_capacity(names.len());
            for (i, c) in r.columns().iter().enumerate() {
                values.push(pg_value(r, i, c)?);
            }
            out.push(values);
        }
        Ok(PgRows {
            names,
            rows: out.into_iter(),
        })
    }
}

/// A PostgreSQL result, converted.
struct PgRows {
    names: Vec<String>,
    rows: std::vec::IntoIter<Vec<Value>>,
}

/// A connection: a SQLite connection, or a PostgreSQL one. What a stage's read functions take.
#[derive(Clone, Copy)]
pub struct Conn<'a>(Inner<'a>);

#[derive(Clone, Copy)]
enum Inner<'a> {
    Lite(&'a rusqlite::Connection),
    Pg(&'a RefCell<Pg>),
}

/// A connection inside a write transaction: what a stage's write functions take (the store's
/// writer opens and commits it). Everything a [`Conn`] does, it does too.
#[derive(Clone, Copy)]
pub struct Tx<'a>(Conn<'a>);

impl<'a> std::ops::Deref for Tx<'a> {
    type Target = Conn<'a>;
    fn deref(&self) -> &Conn<'a> {
        &self.0
    }
}

impl<'a> Tx<'a> {
    /// Inside the SQLite transaction the caller holds open.
    pub fn lite(txn: &'a rusqlite::Transaction<'_>) -> Tx<'a> {
        Tx(Conn(Inner::Lite(txn)))
    }

    /// Inside the PostgreSQL transaction the caller has begun on `pg`.
    pub(crate) fn pg(pg: &'a RefCell<Pg>) -> Tx<'a> {
        Tx(Conn(Inner::Pg(pg)))
    }

    /// The audit chain's head (sequence number, hash) as this transaction last appended it,
    /// on PostgreSQL: every write batch holds the store's one write lock there, so nobody else
    /// appends until it commits, and the head need not be read back for each entry (a round
    /// trip per entry; a batch of outcomes appends dozens). `None` on SQLite, where the read
    /// costs microseconds, before the transaction's first append, and after any rollback (to
    /// a job's savepoint: what it appended is gone; [`Pg::forget_chain`]).
    pub(crate) fn chain_head(&self) -> Option<(i64, String)> {
        match self.0.0 {
            Inner::Lite(_) => None,
            Inner::Pg(pg) => pg.borrow().chain.clone(),
        }
    }

    /// This job appended the entry `(seq, hash)`: the chain's head now.
    pub(crate) fn chain_appended(&self, seq: i64, hash: &str) {
        if let Inner::Pg(pg) = self.0.0 {
            pg.borrow_mut().chain = Some((seq, hash.to_string()));
        }
    }
}

impl<'a> Conn<'a> {
    /// A SQLite connection (a reader, or a command's own connection).
    pub fn lite(conn: &'a rusqlite::Connection) -> Conn<'a> {
        Conn(Inner::Lite(conn))
    }

    /// A PostgreSQL connection.
    pub(crate) fn pg(pg: &'a RefCell<Pg>) -> Conn<'a> {
        Conn(Inner::Pg(pg))
    }

    /// Whether this is PostgreSQL (for the few statements whose best form differs).
    pub fn is_postgres(&self) -> bool {
        matches!(self.0, Inner::Pg(_))
    }

    /// Run one statement; how many rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        match self.0 {
            Inner::Lite(c) => params.with(|p| Ok(c.execute(&lite(sql), p)?)),
            Inner::Pg(pg) => {
                let mut pg = pg.borrow_mut();
                let stmt = pg.prepare(sql)?;
                params.with(|p| pg.execute(&stmt, p))
            }
        }
    }

    /// Run statements without parameters, one after another (schema, maintenance).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match self.0 {
            Inner::Lite(c) => Ok(c.execute_batch(sql)?),
            Inner::Pg(pg) => {
                // Maybe a savepoint's rollback: the audit head is read again.
                let mut pg = pg.borrow_mut();
                pg.chain = None;
                Ok(pg.client.batch_execute(&translate(sql))?)
            }
        }
    }

    /// The first row of a query, through `f`; no row is an error ([`OptionalExtension`]).
    pub fn query_row<T, F>(&self, sql: &str, params: impl Params, f: F) -> Result<T>
    where
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// A statement compiled once and kept (the hot paths).
    pub fn prepare_cached(&self, sql: &str) -> Result<Stmt<'a>> {
        Ok(Stmt(match self.0 {
            Inner::Lite(c) => StmtInner::Cached(c.prepare_cached(&lite(sql))?),
            Inner::Pg(pg) => {
                let stmt = pg.borrow_mut().prepare(sql)?;
                StmtInner::Pg { pg, stmt }
            }
        }))
    }

    /// A statement compiled for this use only (one-off queries, which must not push the hot
    /// ones out of SQLite's cache).
    pub fn prepare(&self, sql: &str) -> Result<Stmt<'a>> {
        Ok(Stmt(match self.0 {
            Inner::Lite(c) => StmtInner::Plain(c.prepare(&lite(sql))?),
            Inner::Pg(pg) => {
                let stmt = pg.borrow_mut().prepare(sql)?;
                StmtInner::Pg { pg, stmt }
            }
        }))
    }

    /// Hold `name`'s lock until this transaction ends: what keeps a sequence that must stay
    /// one line (the audit chain's next number and hash, ids read behind a cursor) one line
    /// when several nodes write. Said where it is needed, and already held on both engines:
    /// SQLite's one writer holds the whole database, and every write batch on PostgreSQL
    /// holds the store's one write lock ([`WRITE_LOCK`]) from its BEGIN (one lock for every
    /// name: two locks taken in opposite orders by two nodes would deadlock).
    ///
    /// A write apart ([`crate::store::Store::write_apart`]) holds no such lock: it may not
    /// ask for one, and is told so.
    pub fn serialise(&self, name: &str) -> Result<()> {
        match self.0 {
            Inner::Pg(pg) if pg.borrow().apart => Err(Error::Apart(name.to_string())),
            _ => Ok(()),
        }
    }

    /// A figure that grows whenever this connection changes a row: compare two readings to
    /// learn whether the work between them wrote anything. On SQLite, the rows changed so
    /// far. On PostgreSQL, the write-ahead log's insert position, which every change moves
    /// (so a change is never missed) and which other sessions' writes move too (a quiet
    /// stretch may look busy, never the reverse): the per-transaction row counts of
    /// `pg_stat_xact_user_tables` cost a scan of the catalogue each (a drill asks twice a
    /// simulated minute: a quarter of its server time).
    pub fn total_changes(&self) -> Result<i64> {
        match self.0 {
            Inner::Lite(c) => Ok(c.total_changes() as i64),
            Inner::Pg(_) => self.query_row(
                "SELECT CAST(pg_current_wal_insert_lsn() - CAST('0/0' AS pg_lsn) AS BIGINT)",
                (),
                |r| r.get(0),
            ),
        }
    }

    /// The id the last insert on this connection gave its row (on PostgreSQL, the last value
    /// a sequence gave in this session: the same for a table with an identity `id`).
    pub fn last_insert_rowid(&self) -> Result<i64> {
        match self.0 {
            Inner::Lite(c) => Ok(c.last_insert_rowid()),
            Inner::Pg(_) => self.query_row("SELECT lastval()", (), |r| r.get(0)),
        }
    }
}

/// A prepared statement.
pub struct Stmt<'c>(StmtInner<'c>);

enum StmtInner<'c> {
    Cached(rusqlite::CachedStatement<'c>),
    Plain(rusqlite::Statement<'c>),
    Pg {
        pg: &'c RefCell<Pg>,
        stmt: postgres::Statement,
    },
}

impl<'c> Stmt<'c> {
    fn lite(&mut self) -> Option<&mut rusqlite::Statement<'c>> {
        match &mut self.0 {
            StmtInner::Cached(s) => Some(s),
            StmtInner::Plain(s) => Some(s),
            StmtInner::Pg { .. } => None,
        }
    }

    /// How many columns its rows have.
    pub fn column_count(&self) -> usize {
        match &self.0 {
            StmtInner::Cached(s) => s.column_count(),
            StmtInner::Plain(s) => s.column_count(),
            StmtInner::Pg { stmt, .. } => stmt.columns().len(),
        }
    }

    /// Run it; how many rows it changed.
    pub fn execute(&mut self, params: impl Params) -> Result<usize> {
        if let Some(s) = self.lite() {
            return params.with(|p| Ok(s.execute(p)?));
        }
        let StmtInner::Pg { pg, stmt } = &self.0 else {
            unreachable!("not SQLite, so PostgreSQL")
        };
        params.with(|p| pg.borrow_mut().execute(stmt, p))
    }

    /// Its rows, one at a time.
    pub fn query(&mut self, params: impl Params) -> Result<Rows<'_>> {
        let rows = match &mut self.0 {
            StmtInner::Cached(s) => RowsInner::Lite(params.with(|p| s.query(p))?),
            StmtInner::Plain(s) => RowsInner::Lite(params.with(|p| s.query(p))?),
            StmtInner::Pg { pg, stmt } => RowsInner::Pg {
                rows: params.with(|p| pg.borrow_mut().query(stmt, p))?,
                current: None,
            },
        };
        Ok(Rows(rows))
    }

    /// Its rows through `f`.
    pub fn query_map<T, F>(&mut self, params: impl Params, f: F) -> Result<MappedRows<'_, F>>
    where
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        Ok(MappedRows {
            rows: self.query(params)?,
            f,
        })
    }

    /// The first row through `f`; no row is an error ([`OptionalExtension`]).
    pub fn query_row<T, F>(&mut self, params: impl Params, f: F) -> Result<T>
    where
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        let mut rows = self.query(params)?;
        match rows.next()? {
            Some(r) => f(&r),
            None => Err(rusqlite::Error::QueryReturnedNoRows.into()),
        }
    }

    /// Whether it returns any row.
    pub fn exists(&mut self, params: impl Params) -> Result<bool> {
        Ok(self.query(params)?.next()?.is_some())
    }
}

/// A statement's rows.
pub struct Rows<'s>(RowsInner<'s>);

enum RowsInner<'s> {
    Lite(rusqlite::Rows<'s>),
    Pg {
        rows: PgRows,
        current: Option<Vec<Value>>,
    },
}

impl Rows<'_> {
    /// The next row, or `None` after the last. (Not an `Iterator`: each row borrows the rows,
    /// as rusqlite's do.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        match &mut self.0 {
            RowsInner::Lite(rows) => Ok(rows.next()?.map(Row::Lite)),
            RowsInner::Pg { rows, current } => {
                *current = rows.rows.next();
                Ok(current.as_deref().map(|values| Row::Pg {
                    values,
                    names: &rows.names,
                }))
            }
        }
    }
}

/// Rows through a function, as an iterator of results.
pub struct MappedRows<'s, F> {
    rows: Rows<'s>,
    f: F,
}

impl<T, F> Iterator for MappedRows<'_, F>
where
    F: FnMut(&Row<'_>) -> Result<T>,
{
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        match self.rows.next() {
            Ok(Some(r)) => Some((self.f)(&r)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// A parameter for PostgreSQL: a SQLite value, converted to whatever type the server inferred
/// for its placeholder.
#[derive(Debug)]
struct Flexible(Value);

fn flexible(params: &[&dyn ToSql]) -> Result<Vec<Flexible>> {
    params
        .iter()
        .map(|p| {
            Ok(Flexible(match p.to_sql()? {
                ToSqlOutput::Borrowed(v) => owned(v),
                ToSqlOutput::Owned(v) => v,
                other => {
                    return Err(Error::Sqlite(rusqlite::Error::ToSqlConversionFailure(
                        format!("a parameter PostgreSQL cannot take: {other:?}").into(),
                    )));
                }
            }))
        })
        .collect()
}

fn owned(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl PgToSql for Flexible {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        let text = |s: &str, out: &mut bytes::BytesMut| -> Result<IsNull, BoxError> {
            if *ty == Type::JSONB {
                // jsonb's binary form is a version byte and the text.
                out.put_u8(1);
            }
            // PostgreSQL's text cannot hold NUL, which SQLite's can (a phone's reply, a
            // feed's field may carry one): it is kept as U+FFFD, so the rest of the row is
            // stored rather than the whole write refused (and retried for ever). The same for
            // NUL escaped in a JSON document (`\u0000`), which PostgreSQL's JSON functions
            // refuse, failing every query that reads a key of the table's documents.
            if s.contains("\\u0000") {
                out.put_slice(storable(s).replace("\\u0000", "\\ufffd").as_bytes());
            } else {
                out.put_slice(storable(s).as_bytes());
            }
            Ok(IsNull::No)
        };
        match &self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => {
                if *ty == Type::INT8 {
                    PgToSql::to_sql(&i, ty, out)
                } else if *ty == Type::INT4 {
                    PgToSql::to_sql(&i32::try_from(*i)?, ty, out)
                } else if *ty == Type::INT2 {
                    PgToSql::to_sql(&i16::try_from(*i)?, ty, out)
                } else if *ty == Type::BOOL {
                    PgToSql::to_sql(&(*i != 0), ty, out)
                } else if *ty == Type::FLOAT8 {
                    PgToSql::to_sql(&(*i as f64), ty, out)
                } else if *ty == Type::FLOAT4 {
                    PgToSql::to_sql(&(*i as f32), ty, out)
                } else if *ty == Type::NUMERIC {
                    out.put_slice(&numeric_bytes(*i));
                    Ok(IsNull::No)
                } else {
                    text(&i.to_string(), out)
                }
            }
            Value::Real(f) => {
                if *ty == Type::FLOAT8 {
                    PgToSql::to_sql(&f, ty, out)
                } else if *ty == Type::FLOAT4 {
                    PgToSql::to_sql(&(*f as f32), ty, out)
                } else if *ty == Type::INT8 && f.fract() == 0.0 && f.abs() < 9.0e15 {
                    PgToSql::to_sql(&(*f as i64), ty, out)
                } else if [Type::TEXT, Type::VARCHAR, Type::UNKNOWN].contains(ty) {
                    text(&f.to_string(), out)
                } else {
                    Err(format!("a real number cannot go where PostgreSQL expects {ty}").into())
                }
            }
            Value::Text(s) => {
                if [Type::INT8, Type::INT4, Type::INT2, Type::BOOL, Type::FLOAT8].contains(ty) {
                    Err(format!("text {s:?} cannot go where PostgreSQL expects {ty}").into())
                } else {
                    text(s, out)
                }
            }
            Value::Blob(b) => {
                if *ty == Type::BYTEA {
                    PgToSql::to_sql(&b, ty, out)
                } else {
                    Err(format!("bytes cannot go where PostgreSQL expects {ty}").into())
                }
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// An integer in `numeric`'s binary form (base-10000 digits, most significant first).
fn numeric_bytes(i: i64) -> Vec<u8> {
    let mut digits = Vec::new();
    let mut n = i.unsigned_abs();
    while n > 0 {
        digits.push((n % 10_000) as i16);
        n /= 10_000;
    }
    digits.reverse();
    let mut out = Vec::with_capacity(8 + 2 * digits.len());
    out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    out.extend_from_slice(&(digits.len() as i16 - 1).max(0).to_be_bytes());
    out.extend_from_slice(&(if i < 0 { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    for d in digits {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out
}

/// A column of PostgreSQL's types that carry text or numbers stormbell reads as SQLite values
/// (`numeric`, which `sum()` of integers returns; `json`/`jsonb`).
struct Raw(Value);

impl<'a> PgFromSql<'a> for Raw {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Raw, BoxError> {
        if *ty == Type::NUMERIC {
            return Ok(Raw(numeric_value(raw)?));
        }
        let raw = if *ty == Type::JSONB {
            raw.get(1..).unwrap_or_default()
        } else {
            raw
        };
        Ok(Raw(Value::Text(std::str::from_utf8(raw)?.to_owned())))
    }

    fn accepts(ty: &Type) -> bool {
        [Type::NUMERIC, Type::JSON, Type::JSONB].contains(ty)
    }
}

/// `numeric`'s binary form as an integer (no fraction, in range) or a real number.
fn numeric_value(raw: &[u8]) -> Result<Value, BoxError> {
    let word = |i: usize| -> Result<i16, BoxError> {
        raw.get(i..i + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a numeric value cut short".into())
    };
    let (ndigits, weight, sign, dscale) = (word(0)?, word(2)?, word(4)? as u16, word(6)?);
    if sign == 0xC000 {
        return Ok(Value::Real(f64::NAN));
    }
    let mut whole: i128 = 0;
    let mut real = 0f64;
    let mut exact = true;
    for k in 0..ndigits.max(0) as usize {
        let d = word(8 + 2 * k)? as i128;
        let power = weight as i32 - k as i32;
        real += d as f64 * 10_000f64.powi(power);
        if power >= 0 {
            match 10_000i128
                .checked_pow(power as u32)
                .and_then(|p| d.checked_mul(p))
                .and_then(|v| whole.checked_add(v))
            {
                Some(w) => whole = w,
                None => exact = false,
            }
        } else if d != 0 {
            exact = false;
        }
    }
    let negative = sign == 0x4000;
    if exact && dscale == 0 && whole <= i64::MAX as i128 {
        let w = whole as i64;
        return Ok(Value::Integer(if negative { -w } else { w }));
    }
    Ok(Value::Real(if negative { -real } else { real }))
}

fn pg_value(row: &postgres::Row, i: usize, column: &postgres::Column) -> Result<Value> {
    let ty = column.type_();
    let v = if *ty == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?.map(Value::Integer)
    } else if *ty == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)?
            .map(|v| Value::Integer(v.into()))
    } else if *ty == Type::INT2 {
        row.try_get::<_, Option<i16>>(i)?
            .map(|v| Value::Integer(v.into()))
    } else if *ty == Type::BOOL {
        row.try_get::<_, Option<bool>>(i)?
            .map(|v| Value::Integer(v.into()))
    } else if *ty == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(i)?.map(Value::Real)
    } else if *ty == Type::FLOAT4 {
        row.try_get::<_, Option<f32>>(i)?
            .map(|v| Value::Real(v.into()))
    } else if [
        Type::TEXT,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::NAME,
        Type::UNKNOWN,
    ]
    .contains(ty)
    {
        row.try_get::<_, Option<String>>(i)?.map(Value::Text)
    } else if *ty == Type::BYTEA {
        row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob)
    } else if <Raw as PgFromSql>::accepts(ty) {
        row.try_get::<_, Option<Raw>>(i)?.map(|r| r.0)
    } else {
        return Err(Error::Unsupported {
            column: column.name().to_owned(),
            ty: ty.to_string(),
        });
    };
    Ok(v.unwrap_or(Value::Null))
}

/// The rows, through `f`, of the statement `sql` makes of an `IN (…)` list over `keys` (its
/// argument is the list's subquery, `SELECT value FROM json_each(?1)`, and `?1` the keys as
/// one JSON array): one statement for any number of keys, prepared once. The keys are text
/// the store gave (a NUL, which SQLite's `json_each` would not carry, is never stored).
///
/// On PostgreSQL every statement is a round trip, and a statement per few hundred keys was a
/// scan of the table per few hundred: the board of a province (19,341 warnings in force) read
/// its calls in 39 scans. As one list the planner joins the keys to the table's index once.
pub fn query_in<T>(
    c: &Conn<'_>,
    keys: &[String],
    sql: impl Fn(&str) -> String,
    f: impl FnMut(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let list = serde_json::to_string(keys)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let mut q = c.prepare_cached(&sql("SELECT value FROM json_each(?1)"))?;
    q.query_map([list], f)?.collect()
}

/// Text as the store keeps it on either engine: a NUL, which PostgreSQL's text cannot hold,
/// as U+FFFD (what the audit chain hashes is what is stored).
pub(crate) fn storable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// A fixed 64-bit advisory-lock key from a lock's name (FNV-1a): the same on every node.
fn lock_key(name: &str) -> i64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) as i64
}

/// Row locks taken with `FOR UPDATE SKIP LOCKED` keep two nodes claiming from one queue
/// apart on PostgreSQL; SQLite has no row locks (its one writer holds the whole database
/// through the transaction) and no such clause: it is dropped there.
fn lite(sql: &str) -> std::borrow::Cow<'_, str> {
    const CLAUSE: &str = " FOR UPDATE SKIP LOCKED";
    if sql.contains(CLAUSE) {
        std::borrow::Cow::Owned(sql.replace(CLAUSE, ""))
    } else {
        std::borrow::Cow::Borrowed(sql)
    }
}

/// A statement in the shared dialect, as PostgreSQL spells it: `?N` becomes `$N` (a bare `?`
/// the next number after the highest so far, as SQLite counts), `INSERT OR IGNORE` becomes
/// `INSERT … ON CONFLICT DO NOTHING`, `IFNULL` becomes `COALESCE`. Quoted text, quoted names
/// and comments are left as they are.
pub fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    let mut highest = 0u32;
    let mut ignore = false;
    while let Some((at, c)) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if sql[at..].starts_with("--") => {
                out.push(c);
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                let mut digits = String::new();
                while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
                    digits.push(d);
                    chars.next();
                }
                let n = match digits.parse::<u32>() {
                    Ok(n) => n,
                    Err(_) => highest + 1,
                };
                highest = highest.max(n);
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ if c.is_ascii_alphabetic() && !prev_is_word(&out) => {
                let rest = &sql[at..];
                if starts_with_words(rest, &["INSERT", "OR", "IGNORE"]) {
                    let skip = words_len(rest, 3);
                    out.push_str("INSERT");
                    for _ in 1..rest[..skip].chars().count() {
                        chars.next();
                    }
                    ignore = true;
                } else if starts_with_words(rest, &["IFNULL"])
                    && rest[6..].trim_start().starts_with('(')
                {
                    out.push_str("COALESCE");
                    for _ in 1..6 {
                        chars.next();
                    }
                } else {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    let mut out = rewrite_calls(&out, "json_each", |args| {
        format!(
            "json_array_elements_text(CAST({} AS json))",
            args.join(", ")
        )
    });
    out = rewrite_calls(&out, "json_extract", |args| match args {
        [doc, path] if path.starts_with("'$.") && path.ends_with('\'') => {
            let keys = path[3..path.len() - 1].replace('.', ",");
            format!("(CAST({doc} AS json) #>> '{{{keys}}}')")
        }
        _ => format!("json_extract({})", args.join(", ")),
    });
    if ignore {
        let trimmed = out.trim_end().trim_end_matches(';').trim_end().len();
        out.truncate(trimmed);
        match find_word(&out, "RETURNING") {
            Some(at) => out.insert_str(at, "ON CONFLICT DO NOTHING "),
            None => out.push_str(" ON CONFLICT DO NOTHING"),
        }
    }
    out
}

/// Every call of the function `name` in `sql` (outside quotes) through `to`, which gets the
/// call's arguments as written.
fn rewrite_calls(sql: &str, name: &str, to: impl Fn(&[&str]) -> String) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = find_word(rest, name) {
        let after = &rest[at + name.len()..];
        let Some(open) = after.strip_prefix('(') else {
            out.push_str(&rest[..at + name.len()]);
            rest = after;
            continue;
        };
        // The arguments, split at the commas of this call's own level.
        let (mut depth, mut quote, mut args, mut start, mut end) = (0, None, Vec::new(), 0, None);
        for (i, c) in open.char_indices() {
            match (quote, c) {
                (Some(q), _) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '(') => depth += 1,
                (None, ')') if depth == 0 => {
                    args.push(open[start..i].trim());
                    end = Some(i);
                    break;
                }
                (None, ')') => depth -= 1,
                (None, ',') if depth == 0 => {
                    args.push(open[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            break;
        };
        out.push_str(&rest[..at]);
        out.push_str(&to(&args));
        rest = &open[end + 1..];
    }
    out.push_str(rest);
    out
}

fn prev_is_word(out: &str) -> bool {
    out.chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// Whether `s` starts with `words` (any case), separated by white space, the last one ending
/// at a word boundary.
fn starts_with_words(s: &str, words: &[&str]) -> bool {
    let mut rest = s;
    for (k, w) in words.iter().enumerate() {
        if k > 0 {
            let t = rest.trim_start();
            if t.len() == rest.len() {
                return false;
            }
            rest = t;
        }
        if rest.len() < w.len() || !rest[..w.len()].eq_ignore_ascii_case(w) {
            return false;
        }
        rest = &rest[w.len()..];
    }
    !rest
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The length of the first `n` words of `s` and the space between them.
fn words_len(s: &str, n: usize) -> usize {
    let mut at = 0;
    for k in 0..n {
        if k > 0 {
            at = s.len() - s[at..].trim_start().len();
        }
        at += s[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len() - at);
    }
    at
}

/// Where the keyword `word` stands in `sql` outside quotes, if it does.
fn find_word(sql: &str, word: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (at, c) in sql.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None => {
                if !prev_is_word(&sql[..at]) && starts_with_words(&sql[at..], &[word]) {
                    return Some(at);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            translate("SELECT a FROM t WHERE b = ?2 AND c = ?1 AND d = '?3' AND e = ?"),
            "SELECT a FROM t WHERE b = $2 AND c = $1 AND d = '?3' AND e = $3"
        );
        assert_eq!(
            translate("SELECT \"?x\" -- what?\n FROM t WHERE a = ?"),
            "SELECT \"?x\" -- what?\n FROM t WHERE a = $1"
        );
    }

    #[test]
    fn sqlite_json_functions_become_postgresql_operators() {
        assert_eq!(
            translate(
                "SELECT 1 FROM t WHERE a IN (SELECT value FROM json_each(?1)) AND json_extract(doc, '$.data.state') = 'gap'"
            ),
            "SELECT 1 FROM t WHERE a IN (SELECT value FROM json_array_elements_text(CAST($1 AS json))) AND (CAST(doc AS json) #>> '{data,state}') = 'gap'"
        );
    }

    #[test]
    fn a_unary_plus_is_left_as_written() {
        // SQLite's planner hint (`WHERE +state = …`, off an index) is not dropped: silently
        // dropped, it put PostgreSQL's planner back on the index the statement meant to keep
        // it off (a scan of every pending step per answer). On a text column PostgreSQL
        // refuses it, so tidy's prepare of every statement names it; where both planners need
        // keeping off an index the SQL says so in a form both read (`state || ''`).
        assert_eq!(
            translate("UPDATE t SET a = b +1, c = d + e WHERE +state = 'x' AND (+id > ?1)"),
            "UPDATE t SET a = b +1, c = d + e WHERE +state = 'x' AND (+id > $1)"
        );
    }

    #[test]
    fn insert_or_ignore_becomes_on_conflict_do_nothing() {
        assert_eq!(
            translate("insert  or\n ignore INTO t (a) VALUES (?1);"),
            "INSERT INTO t (a) VALUES ($1) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            translate("INSERT OR IGNORE INTO t (a) VALUES (?1) RETURNING id"),
            "INSERT INTO t (a) VALUES ($1) ON CONFLICT DO NOTHING RETURNING id"
        );
        // A name that merely contains the words is left alone.
        assert_eq!(
            translate("SELECT ifnull_x, IFNULL(a, 0) FROM reinsert"),
            "SELECT ifnull_x, COALESCE(a, 0) FROM reinsert"
        );
    }

    #[test]
    fn numeric_round_trips_through_its_binary_form() {
        for i in [
            0i64,
            1,
            9_999,
            10_000,
            123_456_789,
            -42,
            i64::MAX,
            -i64::MAX,
        ] {
            assert_eq!(
                numeric_value(&numeric_bytes(i)).unwrap(),
                Value::Integer(i),
                "{i}"
            );
        }
        // 1.5: one digit before the point, one after (scale 1).
        let mut b = Vec::new();
        for w in [2i16, 0, 0, 1, 1, 5000] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        assert_eq!(numeric_value(&b).unwrap(), Value::Real(1.5));
        assert!(numeric_value(&[0, 1]).is_err());
    }
}
