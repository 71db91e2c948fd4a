//! What the PostgreSQL tests share: the test server and a fresh database per test.

/// The server the tests use: `postgres://USER@HOST:PORT`, without a database name.
fn server() -> String {
    std::env::var("TERN_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "TERN_TEST_POSTGRES is not set: run the suite with scripts/test, which starts a \
             PostgreSQL server, or point it at one (postgres://USER@HOST:PORT)"
        )
    })
}

/// A fresh, empty database on the test server; returns its URL.
pub async fn fresh_database() -> String {
    let base = server();
    let (admin, conn) = tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL server");
    tokio::spawn(conn);
    let name = format!("tern_test_{:016x}", rand::random::<u64>());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    format!("{base}/{name}")
}
