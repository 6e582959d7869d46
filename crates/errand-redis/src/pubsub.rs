//! The listener's connection, on one Redis or on a cluster: a [`Sink`] to subscribe with and a
//! [`Feed`] of messages.
//!
//! On one Redis it is redis-rs's pub/sub connection (`SUBSCRIBE`). On a cluster it is a
//! cluster connection of its own speaking RESP3, whose push messages arrive on a channel:
//! `SSUBSCRIBE` goes to the primary of each channel's slot (one call per channel, since one
//! call may name one slot only), and a node's connection that drops ends the feed, so the
//! listener connects again and resubscribes to everything on the current primaries.

use crate::config::RedisConfig;
use crate::redis_conn::{Target, cluster_builder, cluster_config};
use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{ProtocolVersion, PushInfo, PushKind, RedisResult, Value};
use tokio::sync::mpsc;

/// One message: its channel and payload.
pub(crate) enum Message {
    Single(redis::Msg),
    Cluster { channel: Vec<u8>, payload: Vec<u8> },
}

impl Message {
    /// The channel's name (empty if it is not UTF-8: errand names none so).
    pub(crate) fn channel(&self) -> &str {
        match self {
            Message::Single(msg) => msg.get_channel_name(),
            Message::Cluster { channel, .. } => std::str::from_utf8(channel).unwrap_or_default(),
        }
    }

    /// The payload.
    pub(crate) fn payload(&self) -> &[u8] {
        match self {
            Message::Single(msg) => msg.get_payload_bytes(),
            Message::Cluster { payload, .. } => payload,
        }
    }
}

/// Where subscriptions are made.
pub(crate) enum Sink {
    Single(PubSubSink),
    Cluster(ClusterConnection),
}

/// Where messages arrive.
pub(crate) enum Feed {
    Single(PubSubStream),
    Cluster(mpsc::UnboundedReceiver<PushInfo>),
}

/// Connects a pub/sub connection to `target`.
pub(crate) async fn connect(target: &Target, config: &RedisConfig) -> RedisResult<(Sink, Feed)> {
    match target {
        Target::Single(client) => {
            let (sink, stream) = client.get_async_pubsub().await?.split();
            Ok((Sink::Single(sink), Feed::Single(stream)))
        }
        Target::Cluster(seeds) => {
            let (tx, rx) = mpsc::unbounded_channel();
            let client = cluster_builder(seeds, config)
                .use_protocol(ProtocolVersion::RESP3)
                .build()?;
            let conn = client
                .get_async_connection_with_config(cluster_config(config).set_push_sender(tx))
                .await?;
            Ok((Sink::Cluster(conn), Feed::Cluster(rx)))
        }
    }
}

/// `SSUBSCRIBE` (or with `subscribe` false, `SUNSUBSCRIBE`) each channel on its own, all at
/// once: one call may name channels of one slot only.
async fn per_channel(
    conn: &ClusterConnection,
    channels: &[String],
    subscribe: bool,
) -> RedisResult<()> {
    let calls = channels.iter().map(|c| {
        let mut conn = conn.clone();
        async move {
            if subscribe {
                conn.ssubscribe(c).await
            } else {
                conn.sunsubscribe(c).await
            }
        }
    });
    futures::future::try_join_all(calls).await.map(drop)
}

impl Sink {
    /// Subscribes to `channels`; returns once the server(s) confirmed.
    pub(crate) async fn subscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Sink::Single(sink) => sink.subscribe(channels).await,
            Sink::Cluster(conn) => per_channel(conn, channels, true).await,
        }
    }

    /// Unsubscribes from `channels`.
    pub(crate) async fn unsubscribe(&mut self, channels: &[String]) -> RedisResult<()> {
        match self {
            Sink::Single(sink) => sink.unsubscribe(channels).await,
            Sink::Cluster(conn) => per_channel(conn, channels, false).await,
        }
    }

    /// Checks that the server (every primary of a cluster) still answers.
    pub(crate) async fn ping(&mut self) -> RedisResult<()> {
        match self {
            Sink::Single(sink) => sink.ping::<Value>().await.map(drop),
            Sink::Cluster(conn) => {
                let every = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::AllSucceeded),
                ));
                conn.route_command(redis::cmd("PING"), every)
                    .await
                    .map(drop)
            }
        }
    }
}

impl Feed {
    /// The next message; `None` once the connection (or one node's) is gone.
    pub(crate) async fn next(&mut self) -> Option<Message> {
        match self {
            Feed::Single(stream) => stream.next().await.map(Message::Single),
            Feed::Cluster(rx) => loop {
                let push = rx.recv().await?;
                match push.kind {
                    PushKind::Disconnection => return None,
                    PushKind::SMessage | PushKind::Message => {
                        let mut data = push.data.into_iter();
                        if let (
                            Some(Value::BulkString(channel)),
                            Some(Value::BulkString(payload)),
                        ) = (data.next(), data.next())
                        {
                            return Some(Message::Cluster { channel, payload });
                        }
                    }
                    _ => {}
                }
            },
        }
    }
}
