//! The page, its script and its style sheet, embedded at build time: the console needs no
//! network and no build step besides `cargo build`.

const INDEX: &[u8] = include_bytes!("../assets/index.html");
const SCRIPT: &[u8] = include_bytes!("../assets/app.js");
const STYLE: &[u8] = include_bytes!("../assets/app.css");
const ICON: &[u8] = include_bytes!("../assets/icon.svg");

/// The content type and bytes served at `path`.
pub fn get(path: &str) -> Option<(&'static str, &'static [u8])> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", INDEX)),
        "/app.js" => Some(("text/javascript; charset=utf-8", SCRIPT)),
        "/app.css" => Some(("text/css; charset=utf-8", STYLE)),
        "/icon.svg" | "/favicon.ico" => Some(("image/svg+xml", ICON)),
        _ => None,
    }
}
