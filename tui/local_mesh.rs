//! How `cloudctl demo` and `cloudctl bench` run the library's local mesh
//! ([`cloudmesh::local_mesh`]): which `cloudd` to start, and the mesh's progress printed as
//! the command's own lines (`demo: node node-1 pid …`, `bench: stopped`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::bail;
use cloudmesh::local_mesh::{LocalMesh, Stopped};

use crate::progress::{warn, ProgressLines};

/// Starts the mesh's nodes and waits until they form one mesh, printing each step. On an
/// error, what started is still owned by `mesh`: [`stop`] it.
pub async fn bring_up(mesh: &mut LocalMesh, lines: ProgressLines) -> anyhow::Result<()> {
    mesh.bring_up(|step| lines.line(step)).await?;
    Ok(())
}

/// Stops the mesh (its nodes, then its directory unless kept) and says so.
pub async fn stop(mesh: LocalMesh, lines: ProgressLines) {
    match mesh.stop().await {
        Ok(Stopped::Removed) => lines.line("stopped"),
        Ok(Stopped::Kept(dir)) => lines.line(format!("stopped; kept {}", dir.display())),
        Err(e) => {
            // The nodes stopped all the same; only the directory is left.
            warn(format!(
                "cloudctl {}: {:#}",
                lines.label(),
                anyhow::Error::new(e)
            ));
            lines.line("stopped");
        }
    }
}

/// Whether `path` is a file this user could run.
pub fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The `cloudd` to run: `explicit`, else the one beside this executable, else the first on
/// `PATH`.
pub fn find_cloudd(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if is_executable(path) {
            return Ok(path.to_owned());
        }
        bail!(
            "--cloudd {}: not an executable file (build it with `cargo build --release`, \
             which puts cloudd in target/release/)",
            path.display()
        );
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_owned));
    if let Some(dir) = &beside {
        let candidate = dir.join("cloudd");
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("cloudd");
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    let beside = beside.map_or_else(
        || "beside cloudctl (its location is unknown)".to_owned(),
        |d| format!("beside cloudctl in {}", d.display()),
    );
    bail!(
        "cannot find the cloudd executable: looked {beside} and on PATH\n  \
         build both with `cargo build --release` (they land in target/release/) and run \
         target/release/cloudctl again, or give the path with --cloudd PATH"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_cloudd_says_where_it_looked() {
        let e = find_cloudd(Some(Path::new("/nonexistent/cloudd"))).expect_err("missing");
        assert!(e.to_string().contains("cargo build --release"), "{e}");
    }
}
