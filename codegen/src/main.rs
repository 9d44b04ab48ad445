//! `cargo run -p pds-codegen`: regenerates generated/ from lexicons/.

use std::process::ExitCode;

fn main() -> ExitCode {
    let root = pds_codegen::workspace_root();
    let (corpus, files) = match pds_codegen::generate_workspace(&root) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out_dir = root.join("generated");
    // Stale files (from removed lexicons) are deleted so generated/ is exactly the output.
    if let Ok(existing) = pds_codegen::existing_files(&out_dir) {
        for rel in existing.difference(&files.keys().cloned().collect()) {
            let path = out_dir.join(rel);
            if let Err(e) = std::fs::remove_file(&path) {
                eprintln!("error: removing {rel}: {e}");
                return ExitCode::FAILURE;
            }
            // Directories left empty go too (remove_dir refuses non-empty ones).
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != out_dir) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
        }
    }
    for (rel, text) in &files {
        let path = out_dir.join(rel);
        if let Some(parent) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(parent) {
                eprintln!("error: {}: {e}", parent.display());
                return ExitCode::FAILURE;
            }
        }
        let same = std::fs::read_to_string(&path).is_ok_and(|old| old == *text);
        if !same {
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("error: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{} lexicon documents -> {} files in generated/",
        corpus.docs.len(),
        files.len()
    );
    ExitCode::SUCCESS
}
