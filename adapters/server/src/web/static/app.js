// Reglament's pages work without JavaScript; this only makes them quicker to use.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Inbox filters: a changed choice applies at once (the button stays for keyboards and no-JS).
  for (const el of document.querySelectorAll("form.filters select, form.filters input[type=checkbox]")) {
    el.addEventListener("change", () => el.form.requestSubmit());
  }
  // A form sent back with errors: put the cursor on the first field to fix.
  const invalid = document.querySelector(".field.invalid input, .field.invalid select, .field.invalid textarea");
  if (invalid) invalid.focus();
  // Buttons that send a form say so and cannot be pressed twice.
  for (const form of document.querySelectorAll("form[method=post]")) {
    form.addEventListener("submit", (event) => {
      const button = event.submitter;
      if (form.dataset.sent) { event.preventDefault(); return; }
      form.dataset.sent = "1";
      if (button && button.dataset.busy) button.textContent = button.dataset.busy;
    });
  }
});
