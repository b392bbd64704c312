//! The Delta `txn` application ids under which pgdelta records where each table's changes
//! came from: the one place their format is written.

use crate::event::{TableName, TopicPartition};

/// The id whose version is the commit LSN of the last source transaction a table holds.
pub fn table_app_id(pipeline: &str, table: &TableName) -> String {
    format!("pgdelta-{pipeline}-{table}")
}

/// Kafka mode: the id whose version is the next offset of `partition` the table has not applied.
pub fn kafka_app_id(table_app_id: &str, partition: &TopicPartition) -> String {
    format!(
        "{table_app_id}-kafka-{}-{}",
        partition.topic, partition.partition
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids_keep_the_format_existing_tables_were_written_with() {
        let table = TableName::new("public", "orders");
        let app_id = table_app_id("shop", &table);
        assert_eq!(app_id, "pgdelta-shop-public.orders");
        let partition = TopicPartition {
            topic: "shop.public.orders".into(),
            partition: 2,
        };
        assert_eq!(
            kafka_app_id(&app_id, &partition),
            "pgdelta-shop-public.orders-kafka-shop.public.orders-2"
        );
    }
}
