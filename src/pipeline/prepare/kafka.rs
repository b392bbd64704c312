//! Kafka mode's part of preparing: every table has a key, the Delta tables are open, and a
//! consumer reads the pipeline's Debezium topics.

use std::collections::HashMap;
use std::sync::Arc;

use super::{open_tables, source_schema, Pipeline, PipelineError, Prepared, RunOptions};
use crate::config::{Config, ResolvedPipeline};
use crate::debezium::connector::{consumer_group, kafka_settings, table_topic, topic_prefix};
use crate::event::{TableName, TableSchema};
use crate::observe::Observer;
use crate::source::kafka::{KafkaChangeSource, KafkaSettings, KafkaSourceSettings, Subscription};
use crate::source::postgres::{ConnectionSettings, SourceTable};

/// Debezium events are merged by key, so a table without one is refused before anything is
/// created.
pub(super) async fn prepare(
    config: &Config,
    resolved: ResolvedPipeline,
    connection: ConnectionSettings,
    sources: &[SourceTable],
    keys: HashMap<TableName, Vec<String>>,
    options: RunOptions,
    observer: Arc<Observer>,
) -> Result<Prepared, PipelineError> {
    if let Some(table) = resolved.tables.iter().find(|t| keys[&t.name].is_empty()) {
        return Err(PipelineError::NoKey {
            pipeline: resolved.name.clone(),
            table: table.name.clone(),
        });
    }
    let tables = open_tables(&resolved, sources, &keys).await?;
    let schemas: Vec<Arc<TableSchema>> = sources
        .iter()
        .map(|source| Arc::new(source_schema(source, &keys[&source.name])))
        .collect();
    let settings = KafkaSourceSettings {
        consumer: kafka_source_settings(config, &resolved),
        postgres: connection,
        keys,
        exit_when_caught_up: options.exit_when_caught_up,
    };
    let source = KafkaChangeSource::connect(settings, schemas)?;
    Ok(Prepared::Kafka(Box::new(Pipeline::new(
        resolved, tables, source, observer,
    ))))
}

/// The consumer settings of a Kafka-mode pipeline: its topics are Debezium's
/// `<topic_prefix>.<schema>.<table>` unless `topics` or `topic_pattern` says otherwise.
fn kafka_source_settings(config: &Config, resolved: &ResolvedPipeline) -> KafkaSettings {
    let kafka = kafka_settings(config, &resolved.name);
    let subscription = match (&kafka.topic_pattern, kafka.topics.is_empty()) {
        (Some(pattern), _) => Subscription::Pattern(pattern.clone()),
        (None, false) => Subscription::Topics(kafka.topics.clone()),
        (None, true) => {
            let prefix = topic_prefix(&kafka, &resolved.name);
            Subscription::Topics(
                resolved
                    .tables
                    .iter()
                    .map(|t| table_topic(&prefix, &t.name))
                    .collect(),
            )
        }
    };
    KafkaSettings {
        bootstrap_servers: kafka.bootstrap_servers.clone().unwrap_or_default(),
        group_id: consumer_group(&kafka, &resolved.name),
        subscription,
        properties: kafka.consumer.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kafka: &str) -> Config {
        let text = format!(
            "[source]\nurl = \"postgres://u@h/db\"\n[pipelines.shop]\nmode = \"kafka\"\ntables = [\"public.orders\", \"sales.items\"]\n[pipelines.shop.kafka]\nbootstrap_servers = \"b:9092\"\n{kafka}"
        );
        Config::from_toml(&text, std::path::Path::new("t.toml"), Vec::new()).unwrap()
    }

    #[test]
    fn subscribes_to_debezium_topics_of_the_tables_by_default() {
        let config = config("");
        let settings = kafka_source_settings(&config, &config.pipeline("shop").unwrap());
        assert_eq!(
            settings.subscription,
            Subscription::Topics(vec!["shop.public.orders".into(), "shop.sales.items".into()])
        );
        assert_eq!(settings.group_id, "pgdelta-shop");
        assert_eq!(settings.bootstrap_servers, "b:9092");
    }

    #[test]
    fn topics_pattern_group_and_consumer_properties_come_from_the_config() {
        let config = config(
            "group_id = \"g\"\ntopic_pattern = \"cdc\\\\..*\"\n[pipelines.shop.kafka.consumer]\n\"fetch.min.bytes\" = \"1\"\n",
        );
        let settings = kafka_source_settings(&config, &config.pipeline("shop").unwrap());
        assert_eq!(
            settings.subscription,
            Subscription::Pattern("cdc\\..*".into())
        );
        assert_eq!(settings.group_id, "g");
        assert_eq!(settings.properties["fetch.min.bytes"], "1");
    }
}
