//! The Lua scripts (`lua/*.lua`, each prefixed with `lua/common.lua` and the files of the
//! functions it calls), called by EVALSHA and loaded again when Redis answers NOSCRIPT (after a
//! restart, a failover or a `SCRIPT FLUSH`).
//! Each script starts by naming its publishing command (`local PUBLISH = …`): `PUBLISH` on
//! one Redis, `SPUBLISH` on a cluster.

use redis::Cmd;

/// One script: its source and SHA-1.
#[derive(Debug)]
pub(crate) struct Lua {
    name: &'static str,
    code: String,
    hash: String,
}

impl Lua {
    fn new(name: &'static str, code: String) -> Self {
        let hash = redis::Script::new(&code).get_hash().to_string();
        Self { name, code, hash }
    }

    /// The script's file name, for error messages.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// `SCRIPT LOAD` of this script.
    pub(crate) fn load_cmd(&self) -> Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(&self.code);
        cmd
    }

    /// Starts a call on the queue whose key base is `base`, with "now" as `ARGV[1]`: the
    /// injected clock's milliseconds, or `''` (`None`) for the script to read Redis's clock.
    pub(crate) fn call<'a>(&'a self, base: &str, now_ms: Option<i64>) -> Call<'a> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.hash).arg(1).arg(base);
        match now_ms {
            Some(ms) => cmd.arg(ms),
            None => cmd.arg(""),
        };
        Call { lua: self, cmd }
    }
}

/// A script invocation being built; run it (possibly with others in one round trip) with
/// [`Redis::run`](crate::redis_conn::Redis::run).
pub(crate) struct Call<'a> {
    pub(crate) lua: &'a Lua,
    pub(crate) cmd: Cmd,
}

impl Call<'_> {
    /// Appends an argument.
    pub(crate) fn arg<T: redis::ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.cmd.arg(arg);
        self
    }
}

// `field => "file.lua" after ["part.lua", …]`: the script `field` is `lua/common.lua`, then
// the parts (the functions it calls), then `lua/file.lua`.
macro_rules! scripts {
    ($($field:ident => $file:literal $(after [$($part:literal),*])?),* $(,)?) => {
        /// Every script of the store.
        #[derive(Debug)]
        pub(crate) struct Scripts {
            $(pub(crate) $field: Lua,)*
        }

        impl Scripts {
            /// The scripts, hashed; with `sharded`, they announce with `SPUBLISH`.
            pub(crate) fn new(sharded: bool) -> Self {
                let publish = if sharded { "SPUBLISH" } else { "PUBLISH" };
                Self {
                    $($field: Lua::new(
                        $file,
                        format!(
                            "local PUBLISH = '{publish}'\n{}{}{}",
                            include_str!("../lua/common.lua"),
                            concat!($($(include_str!(concat!("../lua/", $part)),)*)?),
                            include_str!(concat!("../lua/", $file)),
                        ),
                    ),)*
                }
            }

            /// All of them, to load at once.
            pub(crate) fn all(&self) -> [&Lua; 12] {
                [$(&self.$field),*]
            }
        }
    };
}

scripts! {
    enqueue => "enqueue.lua",
    claim => "claim.lua" after ["claim_tasks.lua"],
    heartbeat => "heartbeat.lua",
    report => "report.lua",
    complete => "complete.lua" after ["complete_attempts.lua"],
    cycle => "cycle.lua" after ["complete_attempts.lua", "claim_tasks.lua"],
    cancel => "cancel.lua",
    retry => "retry.lua",
    reap => "reap.lua",
    purge => "purge.lua",
    watch => "watch.lua",
    meta_swap => "meta_swap.lua",
}
