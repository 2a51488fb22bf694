// The console's only script: live regions, copy buttons. Pages work without it.
"use strict";

// <section data-live="/live/…" data-interval="1000">: its content is fetched again and
// again, so the page stays current without a reload.
function startLive(region) {
  const url = region.dataset.live;
  const every = Number(region.dataset.interval || 2000);
  const paused = document.querySelector(".live-paused");
  async function refresh() {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      // Signed out (401), or answered by another page than the fragment (a redirect the
      // fetch followed, to the sign-in page say): the whole page goes to sign in.
      if (response.status === 401 || response.redirected) {
        window.location.assign("/signin?next=" + encodeURIComponent(window.location.pathname));
        return;
      }
      if (!response.ok) throw new Error(String(response.status));
      region.innerHTML = await response.text();
      if (paused) paused.hidden = true;
    } catch (error) {
      if (paused) paused.hidden = false;
    }
    window.setTimeout(refresh, every);
  }
  window.setTimeout(refresh, every);
}

// <button data-copy="element-id">: copies that element's text.
function startCopy(button) {
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = "Copied";
    } catch (error) {
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    }
  });
}

document.querySelectorAll("[data-live]").forEach(startLive);
document.querySelectorAll("button[data-copy]").forEach(startCopy);
