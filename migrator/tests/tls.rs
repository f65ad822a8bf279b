//! The migrator's pooled connections and its change stream (shardgate-cdc)
//! encrypted as the data sources' URLs say: verified TLS against the
//! sandbox's CA works, another CA's certificate is refused, naming the
//! data source.

use mysql_async::prelude::Queryable;
use shardgate_cdc::{ChangeStream, TableFilter};
use shardgate_integration_tests::tls::{sandbox_tls, with_tls};
use shardgate_integration_tests::{sandbox_ready, test_config};
use shardgate_migrator::backend::Backends;
use shardgate_rules::config::SslMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_and_the_change_stream_connect_as_the_url_says() {
    let cfg = test_config();
    if !sandbox_ready(&cfg, "pools_and_the_change_stream_connect_as_the_url_says") {
        return;
    }
    let tls = sandbox_tls(&cfg).await;
    let filter = || TableFilter::new().with_table("ds0", "tls_probe");

    let verified = with_tls(cfg.clone(), SslMode::VerifyIdentity, Some(tls.ca));
    let backends = Backends::new(&verified, &verified, 2);
    let mut conn = backends.conn("ds0").await.expect("a verified connection");
    let cipher: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await
        .expect("the session's cipher");
    assert!(
        cipher.as_ref().is_some_and(|(_, c)| !c.is_empty()),
        "not encrypted: {cipher:?}"
    );
    drop(conn);
    let (position, _) = backends.position("ds0").await.expect("a binlog position");
    let opts = backends.opts("ds0").expect("ds0's options");
    ChangeStream::open(opts, position.clone(), filter())
        .await
        .expect("a change stream over verified TLS")
        .close()
        .await
        .expect("closed");
    backends.disconnect().await;

    // The servers' own certificate is no CA of theirs: nothing chains to it.
    let wrong = with_tls(cfg, SslMode::VerifyCa, Some(tls.server_cert));
    let backends = Backends::new(&wrong, &wrong, 1);
    let err = backends.conn("ds0").await.expect_err("refused");
    assert!(err.to_string().contains("ds0"), "{err}");
    let opts = backends.opts("ds0").expect("ds0's options");
    assert!(
        ChangeStream::open(opts, position, filter()).await.is_err(),
        "the change stream ignored the URL's CA"
    );
    backends.disconnect().await;
}
