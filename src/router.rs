//! Per-VM routing state: the validated config, its balancer and RNG. Turns one request into the
//! steering value `ip:port[,ip:port...]` (primary first, then retry hosts), reusing one buffer.

use crate::config::Config;
use crate::lb::{self, Balancer, NoLoad, PickCtx, Picks};

/// The header to set and its value, for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steering<'a> {
    pub header: &'a str,
    pub value: &'a str,
}

pub struct Router {
    config: Config,
    balancer: Box<dyn Balancer>,
    rng: fastrand::Rng,
    picks: Picks,
    value: String,
}

impl Router {
    /// `seed` should differ per VM so that workers do not draw the same random sequence.
    pub fn new(config: Config, seed: u64) -> Self {
        let balancer = lb::build(config.algorithm, &config.pool);
        let picks = Picks::with_capacity(config.target.max_hosts);
        let value = String::with_capacity(config.target.max_hosts * 48);
        Router { config, balancer, rng: fastrand::Rng::with_seed(seed), picks, value }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The request header that carries the picks.
    pub fn header(&self) -> &str {
        &self.config.target.header
    }

    /// Picks backends for one request and renders the steering value; `None` when no backend
    /// can be chosen.
    pub fn steer(&mut self) -> Option<Steering<'_>> {
        let accept = |_: usize| true;
        let mut ctx = PickCtx {
            accept: &accept,
            rng: &mut self.rng,
            key: None,
            load: &mut NoLoad,
            now_ns: 0,
        };
        self.balancer.pick(&mut ctx, &mut self.picks);
        self.value.clear();
        for (n, &i) in self.picks.as_slice().iter().enumerate() {
            let Some(backend) = self.config.pool.get(i as usize) else { continue };
            if n > 0 {
                self.value.push(',');
            }
            self.value.push_str(&backend.host);
        }
        if self.value.is_empty() {
            None
        } else {
            Some(Steering { header: &self.config.target.header, value: &self.value })
        }
    }

    /// Ids of the backends chosen by the last [`Router::steer`], in order.
    pub fn last_picks(&self) -> impl Iterator<Item = &str> {
        self.picks
            .as_slice()
            .iter()
            .filter_map(|&i| self.config.pool.get(i as usize))
            .map(|b| b.id.as_str())
    }
}
