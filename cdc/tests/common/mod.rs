//! Shared helpers of the change capture tests: the sandbox primary they
//! read (ds1), a throwaway database per test, and stream reading with a
//! deadline so that a stuck stream fails the test instead of hanging it.

#![allow(dead_code)] // each test binary uses its own subset

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use shardgate_cdc::{
    current_position, BinlogPosition, ChangeStream, StreamItem, TableFilter, Transaction,
};

/// The sandbox's ds1 primary (binlog_format=ROW, binlog_row_metadata=FULL).
pub const PRIMARY: (&str, u16) = ("127.0.0.1", 13307);

/// Opts for the primary, or None (test skipped) when the sandbox is not
/// running and SHARDGATE_REQUIRE_SANDBOX is not 1.
pub fn primary(test: &str) -> Option<Opts> {
    let reachable = PRIMARY
        .to_socket_addrs()
        .ok()
        .into_iter()
        .flatten()
        .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    if !reachable {
        if std::env::var("SHARDGATE_REQUIRE_SANDBOX").as_deref() == Ok("1") {
            panic!("{test}: sandbox primary {PRIMARY:?} is down and SHARDGATE_REQUIRE_SANDBOX=1");
        }
        eprintln!("SKIPPED: sandbox primary {PRIMARY:?} is down ({test}; start it with docker/sandbox.sh up)");
        return None;
    }
    Some(
        Opts::from_url(&format!("mysql://root@{}:{}/", PRIMARY.0, PRIMARY.1)).expect("sandbox URL"),
    )
}

/// A database of its own for one test, dropped by `drop`.
pub struct TestDb {
    pub name: String,
    pub opts: Opts,
}

impl TestDb {
    pub async fn create(opts: &Opts, tag: &str) -> TestDb {
        let name = format!("cdc_test_{tag}_{}", std::process::id());
        let mut conn = Conn::new(opts.clone()).await.unwrap();
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
            .await
            .unwrap();
        conn.query_drop(format!("CREATE DATABASE `{name}`"))
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
        let opts = mysql_async::OptsBuilder::from_opts(opts.clone())
            .db_name(Some(name.clone()))
            .into();
        TestDb { name, opts }
    }

    pub async fn conn(&self) -> Conn {
        Conn::new(self.opts.clone()).await.unwrap()
    }

    pub async fn exec(&self, statements: &[&str]) {
        let mut conn = self.conn().await;
        for sql in statements {
            conn.query_drop(*sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        conn.disconnect().await.unwrap();
    }

    pub async fn position(&self) -> BinlogPosition {
        let mut conn = self.conn().await;
        let (position, _) = current_position(&mut conn).await.unwrap();
        conn.disconnect().await.unwrap();
        position
    }

    pub fn filter(&self, tables: &[&str]) -> TableFilter {
        tables.iter().map(|t| (self.name.clone(), *t)).collect()
    }

    pub async fn stream(&self, from: BinlogPosition, tables: &[&str]) -> ChangeStream {
        ChangeStream::open(self.opts.clone(), from, self.filter(tables))
            .await
            .unwrap()
    }

    pub async fn drop(self) {
        let mut conn = self.conn().await;
        conn.query_drop(format!("DROP DATABASE `{}`", self.name))
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
    }
}

/// The next item, failing the test after 20 s.
pub async fn next_item(stream: &mut ChangeStream) -> StreamItem {
    tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("the stream yielded nothing for 20 s")
        .expect("stream error")
}

/// The next transaction, skipping progress.
pub async fn next_transaction(stream: &mut ChangeStream) -> Transaction {
    loop {
        if let StreamItem::Transaction(tx) = next_item(stream).await {
            return tx;
        }
    }
}

/// Where an item leaves the stream.
pub fn item_position(item: &StreamItem) -> &BinlogPosition {
    match item {
        StreamItem::Transaction(tx) => &tx.end,
        StreamItem::Progress(position) => position,
    }
}
