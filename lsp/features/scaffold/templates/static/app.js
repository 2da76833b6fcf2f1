// The form and the list view of every loopcoder scaffold app. Generic: the fields are
// read from index.html (each control's name and data-type), the API path from <body>.
"use strict";

const { api, edit: editText, delete: deleteText, failed: failedText } = document.body.dataset;
const form = document.getElementById("record-form");
const rows = document.querySelector("#records tbody");
const columns = Array.from(document.querySelectorAll("#records th[data-field]"));
const cancel = document.getElementById("cancel");
let editing = null; // the id of the record being edited, or null for a new one

function controls() {
  return Array.from(form.querySelectorAll("[data-type]"));
}

function valueOf(control) {
  const type = control.dataset.type;
  if (type === "boolean") return control.checked;
  const raw = type === "long_text" ? control.value : control.value.trim();
  if (raw.trim() === "") return null;
  if (type === "integer") return Number.parseInt(raw, 10);
  if (type === "decimal") return Number.parseFloat(raw);
  return raw;
}

function show(control, value) {
  if (control.dataset.type === "boolean") control.checked = Boolean(value);
  else control.value = value === null || value === undefined ? "" : String(value);
}

function clearErrors() {
  for (const p of form.querySelectorAll(".error")) p.textContent = "";
}

function showErrors(errors) {
  for (const [field, message] of Object.entries(errors)) {
    const target = document.getElementById(`error-${field}`) || document.getElementById("error-_form");
    target.textContent = message;
  }
}

function cell(value) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "" : value === true ? "✓" : value === false ? "✗" : String(value);
  return td;
}

function button(text, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

async function load() {
  const response = await fetch(api);
  const records = await response.json();
  rows.replaceChildren(...records.map((record) => {
    const tr = document.createElement("tr");
    for (const th of columns) tr.append(cell(record[th.dataset.field]));
    const actions = document.createElement("td");
    actions.append(button(editText, () => edit(record)), button(deleteText, () => remove(record.id)));
    tr.append(actions);
    return tr;
  }));
}

function edit(record) {
  editing = record.id;
  for (const control of controls()) show(control, record[control.name]);
  cancel.hidden = false;
  form.scrollIntoView({ behavior: "smooth" });
}

function reset() {
  editing = null;
  form.reset();
  clearErrors();
  cancel.hidden = true;
}

async function remove(id) {
  await fetch(`${api}/${id}`, { method: "DELETE" });
  if (editing === id) reset();
  await load();
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors();
  const record = Object.fromEntries(controls().map((control) => [control.name, valueOf(control)]));
  const response = await fetch(editing === null ? api : `${api}/${editing}`, {
    method: editing === null ? "POST" : "PUT",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(record),
  });
  if (response.status === 422) {
    showErrors((await response.json()).errors || {});
    return;
  }
  if (!response.ok) {
    showErrors({ _form: `${failedText} ${response.status}.` });
    return;
  }
  reset();
  await load();
});

cancel.addEventListener("click", reset);
load();
