//! `pgdelta connector ...`: the Debezium connector of a pipeline (Kafka mode).

use anyhow::{Context, Result};
use clap::Subcommand;

use pgdelta::config::Config;
use pgdelta::debezium::connect::{ConnectClient, Registered};
use pgdelta::debezium::connector::{connector_config, connector_name, kafka_settings, Password};

#[derive(Debug, Subcommand)]
pub enum ConnectorCommand {
    /// Print the Debezium PostgreSQL connector config (Kafka Connect JSON) for a pipeline.
    Config {
        name: String,
        /// Print the real database password instead of a placeholder.
        #[arg(long)]
        show_password: bool,
    },
    /// Create the connector in Kafka Connect, or update its config when it exists.
    Register {
        name: String,
        /// Kafka Connect REST URL; defaults to the pipeline's kafka.connect_url.
        #[arg(long)]
        connect_url: Option<String>,
    },
    /// Show the connector's and its tasks' state in Kafka Connect.
    Status {
        name: String,
        #[arg(long)]
        connect_url: Option<String>,
    },
    /// Remove the connector from Kafka Connect (its replication slot stays).
    Delete {
        name: String,
        #[arg(long)]
        connect_url: Option<String>,
    },
}

pub async fn run(config: &Config, command: ConnectorCommand) -> Result<()> {
    match command {
        ConnectorCommand::Config {
            name,
            show_password,
        } => {
            let password = match show_password {
                true => Password::Reveal,
                false => Password::Placeholder,
            };
            let connector = connector_config(config, &name, password)?;
            println!("{}", serde_json::to_string_pretty(&connector)?);
        }
        ConnectorCommand::Register { name, connect_url } => {
            let connector = connector_config(config, &name, Password::Reveal)?;
            let client = client(config, &name, connect_url)?;
            let outcome = client
                .register(&connector)
                .await
                .with_context(|| format!("cannot register connector {}", connector.name))?;
            let what = match outcome {
                Registered::Created => "created",
                Registered::Updated => "updated",
            };
            println!("connector {} {what}", connector.name);
        }
        ConnectorCommand::Status { name, connect_url } => {
            let connector = connector_name(&kafka_settings(config, &name), &name);
            let status = client(config, &name, connect_url)?
                .status(&connector)
                .await
                .with_context(|| format!("cannot get the status of connector {connector}"))?;
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
        ConnectorCommand::Delete { name, connect_url } => {
            let connector = connector_name(&kafka_settings(config, &name), &name);
            client(config, &name, connect_url)?
                .delete(&connector)
                .await
                .with_context(|| format!("cannot delete connector {connector}"))?;
            println!("connector {connector} deleted");
        }
    }
    Ok(())
}

fn client(config: &Config, pipeline: &str, url: Option<String>) -> Result<ConnectClient> {
    config.pipeline(pipeline)?;
    let url = url
        .or_else(|| kafka_settings(config, pipeline).connect_url)
        .with_context(|| {
            format!("no Kafka Connect URL: pass --connect-url or set [pipelines.{pipeline}.kafka] connect_url")
        })?;
    Ok(ConnectClient::new(&url)?)
}
