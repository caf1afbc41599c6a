//! Live PostgreSQL 15: `initdb` and `postgres` run as the `postgres` user in a scratch directory, a scripted
//! `psql -c` / `pgbench` workload (simple queries, extended protocol, named prepared statements, a Parse that
//! fails, SSLRequest refused) while tcpdump captures loopback, then the agent pipeline on the capture; the logs
//! must match the workload exactly, and the server's own statement log. Needs root; skipped otherwise.

mod live;

use live::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = "/usr/lib/postgresql/15/bin";

fn counts<'a>(it: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for k in it {
        *m.entry(k.to_string()).or_default() += 1;
    }
    m
}

fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn postgresql_live_workload_is_logged_exactly() {
    let initdb = format!("{BIN}/initdb");
    let postgres = format!("{BIN}/postgres");
    let pgbench = format!("{BIN}/pgbench");
    if !can_run(
        "postgresql_live",
        &[&initdb, &postgres, &pgbench, "psql", "runuser", "tcpdump"],
    ) {
        return;
    }
    let dir = TempDir::new("fathom-pg-live");
    let (ok, out) = run(Command::new("chown").arg("postgres").arg(&dir.0));
    assert!(ok, "{out}");
    let data = dir.join("data");
    let (ok, out) = run(Command::new("runuser")
        .args([
            "-u", "postgres", "--", &initdb, "-A", "trust", "-U", "postgres", "-D",
        ])
        .arg(&data));
    assert!(ok, "initdb: {out}");
    let port = free_port();
    let server_log = dir.join("server.log");
    let log_file = std::fs::File::create(&server_log).expect("server log");
    let _ = Command::new("chown")
        .arg("postgres")
        .arg(&server_log)
        .status();
    let child = Command::new("runuser")
        .args(["-u", "postgres", "--", &postgres, "-D"])
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(&dir.0)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "log_statement=all",
            "-c",
            "ssl=off",
        ])
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("postgres starts");
    let mut server = Proc::new("postgres", child);
    server.pid_file = Some(data.join("postmaster.pid"));
    assert!(wait_port(port, Duration::from_secs(60)), "postgres listens");
    std::fs::write(
        dir.join("ok.sql"),
        "SELECT count(*) FROM t;\nUPDATE t SET v = 'x' WHERE id = 1;\n",
    )
    .unwrap();
    std::fs::write(dir.join("bad.sql"), "SELECT * FROM nope;\n").unwrap();
    let pcap = dir.join("postgresql.pcap");
    let mut dump = tcpdump(&pcap, port);

    let p = port.to_string();
    let psql = |args: &[&str]| {
        let mut c = Command::new("psql");
        // sslmode=prefer (the default): an SSLRequest, answered 'N' by this server.
        c.args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &p,
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(args);
        run(&mut c)
    };
    let bench = |mode: &str, script: &str, tx: &str| {
        let mut c = Command::new(&pgbench);
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &p,
            "-U",
            "postgres",
            "-n",
            "-M",
            mode,
            "-t",
            tx,
            "-f",
        ])
        .arg(dir.join(script))
        .arg("postgres");
        run(&mut c)
    };
    // 4 Query: the third carries two statements (two CommandComplete, one log); the fourth fails 42P01.
    let (ok, out) = psql(&[
        "-c",
        "CREATE TABLE t (id int primary key, v text)",
        "-c",
        "INSERT INTO t VALUES (1,'a'),(2,'b'),(3,'c')",
        "-c",
        "SELECT * FROM t; SELECT count(*) FROM t",
        "-c",
        "SELECT * FROM nope",
    ]);
    assert!(!ok && out.contains("does not exist"), "{out}");
    // Extended protocol, unnamed statements: 3 transactions × 2 statements = 6 Execute.
    let (ok, out) = bench("extended", "ok.sql", "3");
    assert!(ok, "{out}");
    // Named prepared statements (Parse once, then Bind/Execute): 6 Execute.
    let (ok, out) = bench("prepared", "ok.sql", "3");
    assert!(ok, "{out}");
    // A Parse that fails (42P01): one Parse log; the skipped Execute is not a log.
    let (_, out) = bench("extended", "bad.sql", "1");
    assert!(out.contains("does not exist"), "{out}");
    // A Query failing with 22012 (division by zero: class 22, client_error).
    let (ok, out) = psql(&["-c", "SELECT 1/0"]);
    assert!(!ok && out.contains("division by zero"), "{out}");

    std::thread::sleep(Duration::from_millis(300));
    dump.stop(Duration::from_secs(10));
    let (logs, stats) = fathom_agent::logs_from_pcap(&pcap).expect("capture parses");
    server.stop(Duration::from_secs(30));

    let mine: Vec<Value> = logs
        .iter()
        .map(|l| serde_json::to_value(l).unwrap())
        .filter(|x| x["port_dst"].as_u64() == Some(port as u64) && x["l7_protocol"] == "postgresql")
        .collect();
    let types = counts(mine.iter().map(|x| x["request_type"].as_str().unwrap()));
    assert_eq!(
        types,
        map(&[("Query", 5), ("Execute", 12), ("Parse", 1)]),
        "{stats:?}"
    );
    let status = counts(mine.iter().map(|x| x["response_status"].as_str().unwrap()));
    assert_eq!(status, map(&[("ok", 15), ("client_error", 3)]));
    let kinds = counts(
        mine.iter()
            .filter_map(|x| x["response_exception"].as_str())
            .map(|e| e.split(' ').next().unwrap()),
    );
    assert_eq!(kinds, map(&[("42P01", 2), ("22012", 1)]));
    assert!(mine
        .iter()
        .all(|x| x["response_code"].is_null() && x["request_domain"] == "postgres"));
    assert!(mine.iter().any(|x| x["request_resource"]
        == "SELECT * FROM t; SELECT count(*) FROM t"
        && x["response_result"] == "SELECT 3; SELECT 1"));
    assert!(mine
        .iter()
        .any(|x| x["request_type"] == "Parse" && x["request_resource"] == "SELECT * FROM nope;"));
    let executes = counts(
        mine.iter()
            .filter(|x| x["request_type"] == "Execute")
            .map(|x| x["endpoint"].as_str().unwrap()),
    );
    assert_eq!(executes, map(&[("SELECT t", 6), ("UPDATE t", 6)]));

    // The server's own accounting: one "statement:" line per simple Query, one "execute" line per Execute,
    // one ERROR per failure.
    let log = std::fs::read_to_string(&server_log).expect("server log");
    let n = |pat: &str| log.lines().filter(|l| l.contains(pat)).count() as u64;
    assert_eq!(n("LOG:  statement: "), types["Query"], "{log}");
    assert_eq!(n("LOG:  execute "), types["Execute"], "{log}");
    assert_eq!(n("ERROR:  "), 3, "{log}");
}
