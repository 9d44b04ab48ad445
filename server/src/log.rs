//! Operator-facing log lines: the Workers console (`wrangler tail`, the dashboard) or standard
//! error natively. Internal details go here, never into responses.

/// Logs an error.
pub fn error(message: &str) {
    #[cfg(target_arch = "wasm32")]
    worker::console_error!("pds: {message}");
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("pds: {message}");
}

/// Logs what an operator may want to follow (the progress of long work).
pub fn info(message: &str) {
    #[cfg(target_arch = "wasm32")]
    worker::console_log!("pds: {message}");
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("pds: {message}");
}
