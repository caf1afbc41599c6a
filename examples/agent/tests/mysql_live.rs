//! Live MariaDB: start the Debian server in a scratch directory, run a scripted `mariadb` / `mariadb-admin`
//! workload while tcpdump captures loopback, run the agent pipeline on the capture, and check the logs against
//! the workload (and against the server's own general log). Needs root (tcpdump); skipped otherwise.

mod live;

use live::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

fn counts<'a>(it: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for k in it {
        *m.entry(k.to_string()).or_default() += 1;
    }
    m
}

#[test]
fn mariadb_live_workload_is_logged_exactly() {
    if !can_run(
        "mysql_live",
        &[
            "mariadb-install-db",
            "/usr/sbin/mariadbd",
            "mariadb",
            "mariadb-admin",
            "tcpdump",
        ],
    ) {
        return;
    }
    let dir = TempDir::new("fathom-mysql-live");
    let data = dir.join("data");
    let (ok, out) = run(Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args([
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]));
    assert!(ok, "mariadb-install-db: {out}");
    let port = free_port();
    let general = dir.join("general.log");
    let server = Command::new("/usr/sbin/mariadbd")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", dir.join("sock").display()))
        .arg(format!("--pid-file={}", dir.join("pid").display()))
        .arg(format!("--port={port}"))
        .args([
            "--bind-address=127.0.0.1",
            "--user=root",
            "--skip-log-error",
            "--general-log",
        ])
        .arg(format!("--general-log-file={}", general.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mariadbd starts");
    let mut server = Proc::new("mariadbd", server);
    assert!(wait_port(port, Duration::from_secs(60)), "mariadbd listens");
    let pcap = dir.join("mysql.pcap");
    let mut dump = tcpdump(&pcap, port);

    let p = port.to_string();
    let client = |args: &[&str]| {
        let mut c = Command::new("mariadb");
        c.args(["--no-defaults", "-h", "127.0.0.1", "-P", &p, "-u", "root"])
            .args(args);
        run(&mut c)
    };
    // 1 COM_QUERY, 1 COM_QUIT.
    assert!(client(&["-e", "CREATE DATABASE shop"]).0);
    // `USE` is the client's command: SELECT DATABASE() then COM_INIT_DB; then one COM_QUERY per statement up
    // to the first error (1146), which ends the batch: 6 COM_QUERY, 1 COM_INIT_DB, 1 COM_QUIT.
    let (ok, out) = client(&[
        "-e",
        "USE shop; CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO t VALUES (1,'a'),(2,'b'),(3,'c'); SELECT * FROM t; UPDATE t SET v='z' WHERE id=2; \
         SELECT * FROM no_such_table; SELECT 2",
    ]);
    assert!(!ok && out.contains("ERROR 1146"), "{out}");
    // 1 COM_QUERY failing with 1064, 1 COM_QUIT.
    let (ok, out) = client(&["-e", "SELEC 1"]);
    assert!(!ok && out.contains("ERROR 1064"), "{out}");
    // 1 COM_PING, 1 COM_QUIT.
    let (ok, out) = run(Command::new("mariadb-admin").args([
        "--no-defaults",
        "-h",
        "127.0.0.1",
        "-P",
        &p,
        "-u",
        "root",
        "ping",
    ]));
    assert!(ok, "{out}");
    // 2 COM_QUERY (a result set of 3 rows, then 1 row), 1 COM_QUIT.
    assert!(
        client(&[
            "-D",
            "shop",
            "-e",
            "SELECT COUNT(*) FROM t; SELECT v FROM t WHERE id = 1"
        ])
        .0
    );

    std::thread::sleep(Duration::from_millis(300));
    dump.stop(Duration::from_secs(10));
    let (logs, _) = fathom_agent::logs_from_pcap(&pcap).expect("capture parses");
    server.stop(Duration::from_secs(30));

    let mine: Vec<Value> = logs
        .iter()
        .map(|l| serde_json::to_value(l).unwrap())
        .filter(|x| x["port_dst"].as_u64() == Some(port as u64) && x["l7_protocol"] == "mysql")
        .collect();
    let types = counts(mine.iter().map(|x| x["request_type"].as_str().unwrap()));
    let want: BTreeMap<String, u64> = [
        ("COM_QUERY", 10),
        ("COM_INIT_DB", 1),
        ("COM_PING", 1),
        ("COM_QUIT", 5),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(types, want);
    let codes = counts(
        mine.iter()
            .filter_map(|x| x["response_code"].as_i64())
            .map(|c| {
                if c == 1146 {
                    "1146"
                } else if c == 1064 {
                    "1064"
                } else {
                    "other"
                }
            }),
    );
    assert_eq!(
        codes,
        [("1064".to_string(), 1), ("1146".to_string(), 1)]
            .into_iter()
            .collect()
    );
    let status = counts(mine.iter().map(|x| x["response_status"].as_str().unwrap()));
    assert_eq!(
        status,
        [("ok".to_string(), 15), ("server_error".to_string(), 2)]
            .into_iter()
            .collect()
    );
    // Results: the 3-row SELECT, the UPDATE's affected row.
    assert!(mine
        .iter()
        .any(|x| x["request_resource"] == "SELECT * FROM t" && x["response_result"] == "rows=3"));
    assert!(mine
        .iter()
        .any(|x| x["endpoint"] == "UPDATE t" && x["response_result"] == "affected_rows=1"));
    assert!(mine
        .iter()
        .any(|x| x["request_type"] == "COM_INIT_DB" && x["request_domain"] == "shop"));

    // The server's own accounting (its general log does not record COM_PING).
    let log = std::fs::read_to_string(&general).expect("general log");
    let mut by_cmd: BTreeMap<String, u64> = BTreeMap::new();
    for line in log.lines() {
        // "261127  2:15:52\t     4 Connect\t..." / "\t\t     4 Init DB\tshop": the field "<id> <command>".
        for field in line.split('\t') {
            if let Some((id, cmd)) = field.trim().split_once(' ') {
                if !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) {
                    *by_cmd.entry(cmd.trim().to_string()).or_default() += 1;
                }
            }
        }
    }
    assert_eq!(
        by_cmd.get("Query").copied().unwrap_or(0),
        types["COM_QUERY"],
        "{log}"
    );
    assert_eq!(
        by_cmd.get("Init DB").copied().unwrap_or(0),
        types["COM_INIT_DB"],
        "{log}"
    );
    assert_eq!(
        by_cmd.get("Quit").copied().unwrap_or(0),
        types["COM_QUIT"],
        "{log}"
    );
}
