// The API key, shared by /status and /realtime (the gateway writes this file into both pages
// where they say key.js, so each page stays one self-contained response): typed into the
// page (kept in localStorage), or passed once as `?key=`.
const STORE = "gateway-status-key";
let memoryKey = "";
function readKey() {
  try { return localStorage.getItem(STORE) || memoryKey; } catch (e) { return memoryKey; }
}
function saveKey(k) {
  memoryKey = k;
  try { if (k) localStorage.setItem(STORE, k); else localStorage.removeItem(STORE); } catch (e) { /* private mode */ }
}
// `?key=` is taken once, stored, and removed from the address bar (and so from history).
(function takeKeyFromUrl() {
  const params = new URLSearchParams(location.search);
  if (!params.has("key")) return;
  saveKey(params.get("key").trim());
  params.delete("key");
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
})();
