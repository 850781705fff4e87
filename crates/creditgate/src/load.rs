//! `creditgate ledger-load`: a steady load for crash and multi-process tests. (In progress.)

#[derive(clap::Args, Debug)]
pub struct LoadArgs {}

pub async fn run(_args: LoadArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
