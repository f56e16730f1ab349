use super::*;
#[test]
fn probe() {
    let big = "a".repeat(1 << 20);
    let cases: Vec<Vec<u8>> = vec![
        br#"{"#.to_vec(),
        br#"{"cluster""#.to_vec(),
        br#"{"cluster":"#.to_vec(),
        br#"{"cluster":"c","#.to_vec(),
        br#"{"cluster":"c",}"#.to_vec(),
        br#"{cluster:"c"}"#.to_vec(),
        br#"{"cluster":"c" "backends":[]}"#.to_vec(),
        br#"{"cluster":"c","backends":[{"id":"a","address":"10.0.0.1:80"},]}"#.to_vec(),
        br#"not json"#.to_vec(),
        br#"{"cluster":"c","backends":[{"id":"a","address":"10.0.0.1:80","weight":true}]}"#.to_vec(),
        br#"{"cluster":"c","backends":[{"id":"a","address":"10.0.0.1:80","weight":100000000000000000000}]}"#.to_vec(),
        br#"{"cluster":"c","backends":[{"id":"a","address":"10.0.0.1:80","weight":10001}]}"#.to_vec(),
        br#"{"cluster":"c","backends":[{"id":"a","address":"[::ffff:10.0.0.1]:80"}]}"#.to_vec(),
        br#"{"cluster":"c","backends":[{"id":"a","address":"[2001:0DB8:0:0:0:0:0:1]:80"}]}"#.to_vec(),
        br#"{"cluster":"c","backends":[{"id":"a","address":"10.0.0.1:080"}]}"#.to_vec(),
        br#"{"cluster":"c","backends":[{"id":"a","address":" 10.0.0.1:80"}]}"#.to_vec(),
        br#"{"cluster":"c","cluster":"d","backends":[{"id":"a","address":"10.0.0.1:80"}]}"#.to_vec(),
        br#"{"cluster":"c","backends":[{"id":"a","address":"10.0.0.1:80"}],"target":null}"#.to_vec(),
        br#"{"cluster":"c","backends":[{"id":"a","address":"10.0.0.1:80"}],"target":{"header":null}}"#.to_vec(),
        format!(r#"{{"cluster":"c","backends":[{{"id":"{big}","address":"10.0.0.1:80"}}]}}"#).into_bytes(),
        format!(r#"{{"cluster":"{big}","backends":[{{"id":"a","address":"10.0.0.1:80"}}]}}"#).into_bytes(),
    ];
    for c in cases {
        match Config::from_json(&c) {
            Ok(cfg) => println!("{:?}\n  OK {:.300}\n", String::from_utf8_lossy(&c[..c.len().min(120)]), format!("{cfg:?}")),
            Err(e) => println!("{:?}\n  ERR({}) {:.300}\n", String::from_utf8_lossy(&c[..c.len().min(120)]), e.message.len(), e.to_string()),
        }
    }
}
