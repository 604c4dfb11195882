() => {
  // Hosted mode keeps a visitor's store copy and jobs under this id (a login name wins when there is one). In a
  // Space the page is framed by another site, so the cookie must be SameSite=None (which needs https).
  if (!document.cookie.split("; ").some((c) => c.startsWith("retrikt_visitor="))) {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    const id = "v-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    const site = location.protocol === "https:" ? "SameSite=None; Secure" : "SameSite=Lax";
    document.cookie = `retrikt_visitor=${id}; path=/; max-age=31536000; ${site}`;
  }
  // Knowledge store map: clicking a point opens that entry (its id is the point's customdata). Gradio plots have
  // no click event, so the plotly_click of each newly drawn map fills the entry-id box and presses Open.
  const hook = () => {
    document.querySelectorAll("#store-map .js-plotly-plot").forEach((plot) => {
      if (plot.dataset.retriktClick || typeof plot.on !== "function") return;
      plot.dataset.retriktClick = "1";
      plot.on("plotly_click", (event) => {
        const point = event && event.points && event.points[0];
        if (!point || typeof point.customdata !== "string") return;
        const box = document.querySelector("#store-entry-id textarea, #store-entry-id input");
        const open = document.querySelector("#store-open");
        if (!box || !open) return;
        box.value = point.customdata;
        box.dispatchEvent(new Event("input", { bubbles: true }));
        setTimeout(() => open.click(), 50);
      });
    });
  };
  // Hook each map as soon as it is drawn: a click in the gap before a timer tick would do nothing. The slow timer
  // only covers a plot whose event API arrived after its last DOM change.
  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; hook(); });
  }).observe(document.body, { childList: true, subtree: true });
  setInterval(hook, 700);
}
