//! A Pingora proxy with no logic at all: the floor the gateway's overhead is measured against.
//! `cargo run --release -p gateway --example bare_pingora -- LISTEN UPSTREAM THREADS`
use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;

struct Bare(std::net::SocketAddr);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> pingora::Result<Box<HttpPeer>> {
        let mut p = HttpPeer::new(self.0, false, String::new());
        p.options.idle_timeout = Some(std::time::Duration::from_secs(60));
        Ok(Box::new(p))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(up), Some(threads)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: bare_pingora LISTEN UPSTREAM THREADS");
        std::process::exit(2);
    };
    let (Ok(up), Ok(threads)) = (up.parse(), threads.parse()) else {
        eprintln!("bad UPSTREAM or THREADS");
        std::process::exit(2);
    };
    // Same runtime flavour as the gateway's default (no work stealing).
    let conf = ServerConf {
        threads,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Bare(up));
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
