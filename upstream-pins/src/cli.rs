//! `kanidm`: the upstream CLI (crate kanidm_tools, lib `kanidm_cli`) unchanged.
use kanidm_cli::ClientOpt;
use structopt::StructOpt;

fn main() {
    let opt = ClientOpt::from_args();
    let level = if opt.debug() { "debug" } else { "info" };
    std::env::set_var("RUST_LOG", format!("kanidm={0},kanidm_client={0}", level));
    env_logger::init();
    opt.exec()
}
