//! What the Redis store tells operators about the Redis it runs on (settings that lose tasks),
//! and the deployment facts it keeps there.

use crate::store::RedisStore;
use errand_core::StoreError;
use redis::Value;

/// The fields of `INFO` sections, as `(name, value)` pairs.
fn info_fields(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim().split_once(':'))
}

/// Sentences for operators about the settings in `memory` and `persistence` (the text of
/// `INFO memory` and `INFO persistence`) and `save` (the `save` setting, when readable) that
/// put tasks at risk.
pub(crate) fn assess(memory: &str, persistence: &str, save: Option<&str>) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some((_, policy)) = info_fields(memory).find(|(k, _)| *k == "maxmemory_policy")
        && policy != "noeviction"
    {
        warnings.push(format!(
            "Redis evicts keys under memory pressure (maxmemory-policy is {policy}): an evicted lease or task record loses the task; set maxmemory-policy noeviction"
        ));
    }
    let aof = info_fields(persistence).any(|(k, v)| k == "aof_enabled" && v == "1");
    match save {
        _ if aof => {}
        Some(points) if !points.trim().is_empty() => {}
        Some(_) => warnings.push(
            "Redis persistence is off (no AOF, no RDB snapshots): a Redis restart loses every queued and running task; enable appendonly yes".into(),
        ),
        None => warnings.push(
            "Redis has no AOF and its RDB snapshot settings could not be read (CONFIG is not allowed): unless snapshots are on, a Redis restart loses every task".into(),
        ),
    }
    warnings
}

/// The CPU time `INFO cpu` reports (`used_cpu_sys` plus `used_cpu_user`), in seconds.
fn cpu_seconds(cpu: &str) -> Option<f64> {
    let field = |name: &str| {
        info_fields(cpu)
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    Some(field("used_cpu_sys")? + field("used_cpu_user")?)
}

impl RedisStore {
    /// The CPU time Redis has used since it started, from `INFO cpu`: on a cluster, summed
    /// over the primaries (replicas' work is left out). For benchmarks, which read it before
    /// and after a phase to report Redis's CPU per task.
    pub async fn server_cpu(&self) -> Result<std::time::Duration, StoreError> {
        let redis = self.redis();
        let mut total = 0.0;
        for node in redis.nodes().await? {
            let mut info = redis::cmd("INFO");
            info.arg("cpu");
            let text: String = redis.query_on(node.as_ref(), &info).await?;
            total += cpu_seconds(&text).ok_or_else(|| {
                StoreError::Backend("INFO cpu has no used_cpu_sys/used_cpu_user".into())
            })?;
        }
        Ok(std::time::Duration::from_secs_f64(total))
    }

    /// See [`Store::warnings`](errand_core::Store::warnings). On a cluster, each primary's
    /// settings are read, and its warnings name it.
    pub(crate) async fn redis_warnings(&self) -> Result<Vec<String>, StoreError> {
        let redis = self.redis();
        let mut warnings = Vec::new();
        for node in redis.nodes().await? {
            let mut memory = redis::cmd("INFO");
            memory.arg("memory");
            let memory: String = redis.query_on(node.as_ref(), &memory).await?;
            let mut persistence = redis::cmd("INFO");
            persistence.arg("persistence");
            let persistence: String = redis.query_on(node.as_ref(), &persistence).await?;
            let mut save = redis::cmd("CONFIG");
            save.arg("GET").arg("save");
            // CONFIG is often renamed away on managed Redis: then the setting is unknown.
            let save: Option<String> =
                match redis.query_on::<Vec<String>>(node.as_ref(), &save).await {
                    Ok(pair) => pair.into_iter().nth(1),
                    Err(e) if e.is_unavailable() => return Err(e),
                    Err(_) => None,
                };
            let found = assess(&memory, &persistence, save.as_deref());
            match &node {
                None => warnings.extend(found),
                Some(node) => warnings.extend(
                    found
                        .into_iter()
                        .map(|w| format!("cluster node {}:{}: {w}", node.host, node.port)),
                ),
            }
        }
        Ok(warnings)
    }

    /// See [`Store::get_meta`](errand_core::Store::get_meta).
    pub(crate) async fn meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        let mut get = redis::cmd("HGET");
        get.arg(self.keys().meta()).arg(name);
        self.redis().query(&get).await
    }

    /// See [`Store::swap_meta`](errand_core::Store::swap_meta).
    pub(crate) async fn swap(
        &self,
        name: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        let scripts = self.redis().scripts();
        let mut call = scripts.meta_swap.call(&self.keys().meta(), None);
        call.arg(name)
            .arg(if expected.is_some() { "value" } else { "none" })
            .arg(expected.unwrap_or(""))
            .arg(value);
        let answer = self.redis().run(&[], vec![call]).await?;
        Ok(matches!(answer.first(), Some(Value::Int(1))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_adds_system_and_user_time() {
        let info = "# CPU\r\nused_cpu_sys:1.250000\r\nused_cpu_user:0.500000\r\nused_cpu_sys_children:9.0\r\n";
        assert_eq!(super::cpu_seconds(info), Some(1.75));
        assert_eq!(super::cpu_seconds("# CPU\r\nused_cpu_sys:1.0\r\n"), None);
    }

    #[test]
    fn eviction_and_missing_persistence_are_reported() {
        let safe_memory = "# Memory\r\nused_memory:100\r\nmaxmemory_policy:noeviction\r\n";
        let aof = "# Persistence\r\naof_enabled:1\r\n";
        let no_aof = "# Persistence\r\naof_enabled:0\r\n";
        assert!(assess(safe_memory, aof, None).is_empty());
        assert!(assess(safe_memory, no_aof, Some("3600 1 300 100")).is_empty());
        let evicting = assess("maxmemory_policy:allkeys-lru\r\n", aof, None);
        assert_eq!(evicting.len(), 1);
        assert!(evicting[0].contains("allkeys-lru") && evicting[0].contains("noeviction"));
        let off = assess(safe_memory, no_aof, Some(""));
        assert_eq!(off.len(), 1);
        assert!(off[0].contains("persistence is off"), "{off:?}");
        assert!(assess(safe_memory, no_aof, None)[0].contains("could not be read"));
    }
}
