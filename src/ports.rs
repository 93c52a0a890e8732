//! `doctor ports`, `doctor tree`, `doctor snapshot` (being written).

#[derive(clap::Args)]
pub struct PortsArgs {}
#[derive(clap::Args)]
pub struct TreeArgs {}
#[derive(clap::Args)]
pub struct SnapshotArgs {}

pub fn ports(_a: PortsArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not yet")
}
pub fn tree(_a: TreeArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not yet")
}
pub fn snapshot(_a: SnapshotArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not yet")
}
