//! Scenario names and what they mean.
//!
//! A load scenario is `<alg>[-org|-quota][-action][-10k[-hot]]`: the signing algorithm of the API
//! the tokens are for; whether the requests name an organization (`-org`: no quota anywhere, so
//! that `-quota` vs `-org` isolates what quotas cost) or name it and the client and the
//! organization both have a quota (`-quota`: every bucket checked and counted); and whether the
//! server holds the large client population (`--many-clients`, default 10 000) instead of the small
//! one (`--clients`, default 10). Requests come from every client of the population in turn,
//! except with `-hot`: then only `--clients` (10) of the large population's clients send, which
//! tells what the number of configured clients costs apart from the memory that thousands of
//! active ones occupy. `startup-10k` is not a load scenario: it restarts the large server on its
//! data dir and reports startup time and idle RSS.

use anyhow::{Result, bail};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Alg {
    ES256,
    EdDSA,
    RS256,
    HS256,
}

impl Alg {
    pub const ALL: [Alg; 4] = [Alg::ES256, Alg::EdDSA, Alg::RS256, Alg::HS256];

    /// The JOSE name, as the Management API's `signing_alg` takes it.
    pub fn jose(self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
            Alg::RS256 => "RS256",
            Alg::HS256 => "HS256",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Alg::ES256 => "es256",
            Alg::EdDSA => "eddsa",
            Alg::RS256 => "rs256",
            Alg::HS256 => "hs256",
        }
    }

    /// The bench API's audience for this algorithm.
    pub fn audience(self) -> String {
        format!("https://bench-{}.example/", self.slug())
    }
}

/// Which configured client population a scenario runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Population {
    /// `--clients` (10): all small-population scenarios share one server.
    Small,
    /// `--many-clients` (10 000): a server of its own, restarted once after setup.
    Large,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadScenario {
    pub alg: Alg,
    pub limits: Limits,
    pub population: Population,
    /// With one trivial credentials-exchange Action bound (`-action`).
    pub action: bool,
    /// Only `--clients` of the population send (`-hot`, large population only).
    pub hot: bool,
}

/// What a scenario's requests carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limits {
    /// No organization, no quota.
    Off,
    /// The organization parameter (org claims, association check), no quota anywhere.
    Org,
    /// The organization, and a quota on both the client and the organization.
    Quota,
}

impl Limits {
    pub const ALL: [Limits; 3] = [Limits::Off, Limits::Org, Limits::Quota];

    fn suffix(self) -> &'static str {
        match self {
            Limits::Off => "",
            Limits::Org => "-org",
            Limits::Quota => "-quota",
        }
    }

    /// The table's `quotas` column.
    pub fn describe(self) -> &'static str {
        match self {
            Limits::Off => "off",
            Limits::Org => "off (org)",
            Limits::Quota => "client+org",
        }
    }
}

impl LoadScenario {
    pub fn name(&self) -> String {
        format!(
            "{}{}{}{}{}",
            self.alg.slug(),
            self.limits.suffix(),
            if self.action { "-action" } else { "" },
            if self.population == Population::Large { "-10k" } else { "" },
            if self.hot { "-hot" } else { "" }
        )
    }
}

/// What `--scenarios` asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub load: Vec<LoadScenario>,
    /// Measure startup time and idle RSS of the large population after a restart.
    pub startup_large: bool,
    /// Measure the bare ES256 handler of `floor.rs` under the same load: with one client
    /// (`floor`, Small) and with the large population's number all sending (`floor-10k`, Large).
    pub floors: Vec<Population>,
}

impl Plan {
    pub fn needs(&self, population: Population) -> bool {
        self.load.iter().any(|s| s.population == population) || (population == Population::Large && self.startup_large)
    }

    pub fn algs(&self, population: Population) -> Vec<Alg> {
        let mut algs: Vec<Alg> = self.load.iter().filter(|s| s.population == population).map(|s| s.alg).collect();
        if algs.is_empty() && population == Population::Large {
            // `startup-10k` alone still needs an API for the grants to point at.
            algs.push(Alg::ES256);
        }
        algs.sort();
        algs.dedup();
        algs
    }

    /// Client sets a population needs, by what their requests carry.
    pub fn client_sets(&self, population: Population) -> Vec<Limits> {
        let mut sets: Vec<Limits> = Limits::ALL
            .into_iter()
            .filter(|l| self.load.iter().any(|s| s.population == population && s.limits == *l))
            .collect();
        if sets.is_empty() && population == Population::Large && self.startup_large {
            sets.push(Limits::Quota);
        }
        sets
    }
}

pub const DEFAULT: &str = "floor,floor-10k,es256,es256-org,es256-quota,eddsa,eddsa-quota,rs256,rs256-quota,hs256,hs256-quota,\
                           es256-action,es256-quota-action,es256-quota-10k,es256-quota-10k-hot,startup-10k";
/// Both populations, so that CI runs the two servers taking turns (with a small large population:
/// see `--smoke`).
pub const SMOKE: &str = "floor,floor-10k,es256,es256-quota,es256-quota-10k,es256-quota-10k-hot,es256-quota-action";

pub fn parse(list: &str) -> Result<Plan> {
    let mut plan = Plan::default();
    for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let name = raw.to_ascii_lowercase();
        if name == "startup-10k" {
            plan.startup_large = true;
            continue;
        }
        if let Some(population) = match name.as_str() {
            "floor" => Some(Population::Small),
            "floor-10k" => Some(Population::Large),
            _ => None,
        } {
            if !plan.floors.contains(&population) {
                plan.floors.push(population);
            }
            continue;
        }
        let (rest, hot) = match name.strip_suffix("-hot") {
            Some(rest) if rest.ends_with("-10k") => (rest, true),
            Some(_) => bail!("scenario {raw:?}: -hot applies to the large population only (<scenario>-10k-hot)"),
            None => (name.as_str(), false),
        };
        let (rest, population) = match rest.strip_suffix("-10k") {
            Some(rest) => (rest, Population::Large),
            None => (rest, Population::Small),
        };
        let (rest, action) = match rest.strip_suffix("-action") {
            Some(rest) => (rest, true),
            None => (rest, false),
        };
        let (rest, limits) = match (rest.strip_suffix("-quota"), rest.strip_suffix("-org")) {
            (Some(rest), _) => (rest, Limits::Quota),
            (None, Some(rest)) => (rest, Limits::Org),
            (None, None) => (rest, Limits::Off),
        };
        let Some(alg) = Alg::ALL.into_iter().find(|a| a.slug() == rest) else {
            bail!(
                "unknown scenario {raw:?}: expected <alg>[-org|-quota][-action][-10k[-hot]] with alg one of es256, eddsa, rs256, \
                 hs256, or startup-10k, or floor, or floor-10k"
            );
        };
        let scenario = LoadScenario { alg, limits, population, action, hot };
        if !plan.load.contains(&scenario) {
            plan.load.push(scenario);
        }
    }
    if plan.load.is_empty() && !plan.startup_large && plan.floors.is_empty() {
        bail!("--scenarios is empty");
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_parses_and_round_trips() {
        let plan = parse(DEFAULT).unwrap();
        assert_eq!(plan.load.len(), 13);
        assert!(plan.startup_large && plan.floors == [Population::Small, Population::Large]);
        let names: Vec<String> = plan.load.iter().map(LoadScenario::name).collect();
        let middle = DEFAULT.strip_prefix("floor,floor-10k,").unwrap().rsplit_once(',').unwrap().0;
        assert_eq!(names.join(","), middle.replace(' ', ""));
        assert_eq!(plan.algs(Population::Large), vec![Alg::ES256]);
        assert_eq!(plan.client_sets(Population::Small), Limits::ALL.to_vec());
        assert_eq!(plan.client_sets(Population::Large), vec![Limits::Quota]);
    }

    #[test]
    fn startup_alone_still_configures_clients() {
        let plan = parse("startup-10k").unwrap();
        assert!(plan.needs(Population::Large) && !plan.needs(Population::Small));
        assert_eq!(plan.client_sets(Population::Large), vec![Limits::Quota]);
    }

    #[test]
    fn floors_need_no_ration_server() {
        let plan = parse("floor-10k, floor, floor").unwrap();
        assert_eq!(plan.floors, [Population::Large, Population::Small], "each once, in the order asked");
        assert!(plan.load.is_empty() && !plan.needs(Population::Small) && !plan.needs(Population::Large));
        assert!(parse("floor-10k-hot").is_err());
    }

    #[test]
    fn bad_names_are_rejected() {
        assert!(parse("es512").is_err());
        assert!(parse(" , ").is_err());
        assert_eq!(
            parse("HS256-quota").unwrap().load[0],
            LoadScenario {
                alg: Alg::HS256,
                limits: Limits::Quota,
                population: Population::Small,
                action: false,
                hot: false
            }
        );
        assert_eq!(parse("eddsa-org-10k").unwrap().load[0].limits, Limits::Org);
        assert!(parse("es256-action-quota").is_err(), "the Action comes after the limits");
        let with_action = parse("es256-quota-action-10k").unwrap().load[0];
        assert_eq!(
            with_action,
            LoadScenario {
                alg: Alg::ES256,
                limits: Limits::Quota,
                population: Population::Large,
                action: true,
                hot: false
            }
        );
        assert_eq!(with_action.name(), "es256-quota-action-10k");
        let hot = parse("es256-quota-10k-hot").unwrap().load[0];
        assert!(hot.hot && hot.population == Population::Large);
        assert_eq!(hot.name(), "es256-quota-10k-hot");
        assert!(parse("es256-quota-hot").is_err(), "-hot needs the large population");
        assert!(parse("es256-quota-hot-10k").is_err(), "-hot comes last");
    }
}
