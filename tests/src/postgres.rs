//! Fresh PostgreSQL databases for tests, on the server `WARD_TEST_POSTGRES_URL` names.

use sqlx::Connection;

/// A database that exists for one test and is dropped after it.
#[derive(Debug)]
pub struct FreshDatabase {
    pub url: String,
    server: String,
    name: String,
}

/// The configured server. A test that needs one is marked
/// `#[cfg_attr(not(ward_postgres), ignore = "needs PostgreSQL: …")]`, so it runs only when the
/// build saw `WARD_TEST_POSTGRES_URL` (or with `--include-ignored`); run without it, it fails
/// with this message instead of passing without testing anything.
fn server() -> String {
    std::env::var("WARD_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "this test needs PostgreSQL: set WARD_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test (.ci/run starts the local server and sets it)"
        )
    })
}

async fn create(server: String) -> FreshDatabase {
    let name = format!("ward_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .expect("connect to WARD_TEST_POSTGRES_URL");
    // A database name cannot be a bound parameter; this one is generated above.
    let create = format!("CREATE DATABASE {name}");
    sqlx::raw_sql(&create)
        .execute(&mut admin)
        .await
        .expect("create a test database");
    let (base, _) = server.rsplit_once('/').expect("URL ends with /DATABASE");
    FreshDatabase {
        url: format!("{base}/{name}"),
        server,
        name,
    }
}

/// A new empty database, for synchronous (process-level) tests.
pub fn fresh_database() -> FreshDatabase {
    let server = server();
    let mut db = None;
    run(async { db = Some(create(server).await) });
    db.expect("the test database was created")
}

/// A new empty database, for async tests.
pub async fn fresh_database_async() -> FreshDatabase {
    create(server()).await
}

fn run(f: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f);
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // On a separate thread: Drop may run inside another runtime.
        let _ = std::thread::spawn(move || {
            run(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let drop_db = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(&drop_db).execute(&mut admin).await;
                }
            });
        })
        .join();
    }
}
