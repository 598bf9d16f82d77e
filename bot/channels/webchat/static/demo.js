// The demo page: the fast clock's switch (minutes become seconds, in the demo only).
(() => {
  "use strict";
  const box = document.getElementById("fast");
  box.addEventListener("change", async () => {
    const answer = await fetch("/chat/demo/clock", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.csrf },
      body: JSON.stringify({ fast: box.checked }),
    });
    if (answer.ok) box.checked = (await answer.json()).fast;
  });
})();
