() => {
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
  setInterval(hook, 700);
}
