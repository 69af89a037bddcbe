// assetstream review: alt-text rules, tag chips, keyboard shortcuts, confirmations. No dependencies.
(function () {
  "use strict";
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const json = (id) => { const el = document.getElementById(id); return el ? JSON.parse(el.textContent) : null; };
  const fill = (tpl, vals) => tpl.replace(/\{(\w+)\}/g, (_, k) => (k in vals ? String(vals[k]) : ""));
  const squash = (s) => (s || "").toLowerCase().replace(/[^0-9a-z]+/g, " ").trim().replace(/\s+/g, " ");

  // --- help -------------------------------------------------------------------------------------------------
  const help = $("#help");
  const helpBtn = $("#help-toggle");
  const toggleHelp = () => {
    if (!help) return;
    help.hidden = !help.hidden;
    if (helpBtn) helpBtn.setAttribute("aria-expanded", String(!help.hidden));
  };
  if (helpBtn) helpBtn.addEventListener("click", toggleHelp);

  // --- the one-letter shortcuts can be turned off (WCAG 2.1.4): kept in this browser ------------------------------
  const KEYS_OFF = "assetstream-review-shortcuts-off";
  const stored = (k) => { try { return window.localStorage.getItem(k); } catch (e) { return null; } };
  let shortcutsOn = stored(KEYS_OFF) !== "1";
  const keysToggle = $("#shortcuts-toggle");
  if (keysToggle) {
    keysToggle.checked = shortcutsOn;
    keysToggle.closest("label").hidden = false;  // without this script there are no shortcuts to switch
    keysToggle.addEventListener("change", () => {
      shortcutsOn = keysToggle.checked;
      try { window.localStorage.setItem(KEYS_OFF, shortcutsOn ? "0" : "1"); } catch (e) { /* private mode */ }
    });
  }

  // --- the sticky action bar: the space kept free below a focused field is the bar's real height (it wraps to
  // two rows at 320 px: trial 20b) -------------------------------------------------------------------------------
  const bar = $(".buttons");
  if (bar && window.ResizeObserver) {
    new ResizeObserver(() => {
      document.documentElement.style.setProperty("--bar-h", Math.ceil(bar.getBoundingClientRect().height) + "px");
    }).observe(bar);
  }

  // --- a shortcut ignored because a control has the focus says so (trial 20b): polite, cleared after a while -----
  const keysNote = $("#keys-note");
  let noteTimer = 0;
  const say = (text) => {
    if (!keysNote) return;
    keysNote.textContent = "";
    window.clearTimeout(noteTimer);
    window.setTimeout(() => { keysNote.textContent = text; }, 50);  // a new text, so it is read again
    noteTimer = window.setTimeout(() => { keysNote.textContent = ""; }, 6000);
  };

  // --- a form is sent once (trial 28 M1): a second Enter, click or `a` while the first is on its way sends nothing
  // (the server, too, answers a repeat of a page's form with the first answer and sends nothing: app/review/once.py)
  let sentForms = new WeakSet();
  document.addEventListener("submit", (ev) => {  // capture: before any of the form's own listeners
    if (!sentForms.has(ev.target)) return;
    ev.preventDefault();
    ev.stopImmediatePropagation();
    say("Already sent: wait for the next page.");
  }, true);
  document.addEventListener("submit", (ev) => { if (!ev.defaultPrevented) sentForms.add(ev.target); });  // after them
  window.addEventListener("pageshow", (ev) => { if (ev.persisted) sentForms = new WeakSet(); });  // Back to the page

  // --- the outcome of a decision is read first: the page's focus starts on its banner ---------------------------
  const outcome = $("#outcome");
  if (outcome) outcome.focus();

  // --- confirmations ----------------------------------------------------------------------------------------
  $$("button[data-confirm]").forEach((b) => b.addEventListener("click", (ev) => {
    const ticked = $$("input[name=ids]:checked").length;  // "{n}": the rows ticked (Approve selected)
    const note = $("#bulk-note");
    if (note) note.textContent = "";
    if (b.dataset.none && !ticked) {  // nothing ticked: say so, no "Approve the 0 selected?" (trial 20)
      ev.preventDefault();
      if (note) note.textContent = b.dataset.none;
      return;
    }
    // a ticked row whose rights a person must confirm: the server's rights check asks, with the count and which,
    // and may approve only the others; a question here first would be a second one (trial 32 F10)
    if (b.value === "selected" && $$("input[name=ids]:checked").some((c) => c.closest("tr") && c.closest("tr").querySelector(".rights-check"))) return;
    const text = ticked === 1 && b.dataset.confirmOne ? b.dataset.confirmOne : b.dataset.confirm;  // "1 asset", "2 assets"
    if (!window.confirm(text.replace("{n}", String(ticked)))) ev.preventDefault();
  }));
  const selectAll = $("#select-all");
  if (selectAll) selectAll.addEventListener("change", () => {
    $$("input[name=ids]").forEach((c) => { c.checked = selectAll.checked; });
  });

  // --- field edits: mark a field edited when its value differs from what was shown ---------------------------
  $$("fieldset.field").forEach((fs) => {
    const input = $("textarea, input[name^='value.']", fs);
    const mark = $(".edited", fs);
    if (!input || !mark) return;
    const shown = input.value;
    const update = () => {
      const edited = input.value.trim() !== shown.trim();
      mark.hidden = !edited;
      fs.classList.toggle("is-edited", edited);
    };
    input.addEventListener("input", update);
    input.addEventListener("change", update);
  });

  // --- alt text: live counter and the validate stage's rules -------------------------------------------------
  const alt = $("#alt_text");
  const rules = json("alt-rules");
  if (alt && rules) {
    const prefix = new RegExp(rules.prefix_pattern, "i");
    const filename = rules.filename_pattern ? new RegExp(rules.filename_pattern, "i") : null;
    const count = $("#alt-count");
    const list = $("#alt-problems");
    const force = $("#force-alt-label");
    const why = $("#force-alt-why");
    const check = () => {
      const text = alt.value.replace(/\s+/g, " ").trim();
      const problems = [];
      // no alt text: a cleared text marks the image decorative, a rejected one (or none) keeps it in review
      const choice = ($("input[name='action.alt_text']:checked") || {}).value || "";
      if (alt.dataset.video) {  // a video is never decorative (trial 36 N3): no alt text is refused, not "decorative"
        if (choice === "rejected") problems.push(rules.messages.video_rejected);
        else if (!text) problems.push(rules.messages.video_empty);
      }
      else if (choice === "decorative") problems.push(rules.messages.decorative);
      else if (alt.dataset.decorative) {  // already decorative: no alt text is right, and the page says who judged so
        if (!text) problems.push(fill(rules.messages.already_decorative, { by: alt.dataset.decorative }));
      }
      else if (choice === "rejected") problems.push(rules.messages.rejected);
      else if (!text) problems.push(alt.defaultValue.trim() ? rules.messages.cleared : rules.messages.empty);
      const sent = choice !== "rejected" && choice !== "decorative";  // else the text typed is not sent
      const m = sent && text.match(prefix);
      if (m && text.length > m[0].length) problems.push(fill(rules.messages.prefix, { match: m[0].trim() }));
      const bare = m ? text.slice(m[0].length).trim() : text;  // "Image of IMG_4032.JPG" too
      const edited = alt.value.trim() !== alt.defaultValue.trim();
      const named = sent && filename && bare && filename.test(bare);  // a file name: never a description
      if (named) problems.push(fill(rules.messages.filename, { text: bare }));
      const hard = sent && text.length > rules.hard_max_chars && edited;
      if (hard) problems.push(fill(rules.messages.too_long_hard, { n: text.length, max: rules.hard_max_chars }));
      else if (sent && text.length > rules.max_chars) problems.push(fill(rules.messages.too_long, { n: text.length, max: rules.max_chars }));
      // refused as written (over the hard limit, or a file name typed here: the server refuses both too) until
      // the person ticks "send as written"
      const refused = hard || (named && edited);
      if (force) force.hidden = !refused;
      if (why && refused) why.textContent = hard ? fill(rules.messages.force_over, { max: rules.hard_max_chars }) : rules.messages.force_file_name;
      // refused as it is: the field says so; an error banner about it (the server's) too
      if (refused || alt.dataset.refused) alt.setAttribute("aria-invalid", "true"); else alt.removeAttribute("aria-invalid");
      const visible = (alt.dataset.visible || "").replace(/\s+/g, " ").trim();
      if (sent && (visible.match(/[0-9A-Za-z]/g) || []).length >= 2) {
        const others = ["title", "caption", "summary"].map((id) => ($("#" + id) || {}).value || "");
        const needle = squash(visible);
        if (![text].concat(others).some((h) => squash(h).includes(needle))) {
          problems.push(fill(rules.messages.visible_text, { text: visible.length > 40 ? visible.slice(0, 39) + "…" : visible }));
        }
      }
      count.textContent = String(text.length);
      count.parentElement.classList.toggle("over", text.length > rules.max_chars);
      list.replaceChildren(...problems.map((p) => { const li = document.createElement("li"); li.textContent = p; return li; }));
    };
    if (alt.getAttribute("aria-invalid") === "true") {  // the banner's error: until the text changes
      alt.dataset.refused = "1";
      alt.addEventListener("input", () => { delete alt.dataset.refused; }, { once: true });
    }
    ["input", "change"].forEach((e) => alt.addEventListener(e, check));
    // an edited alt text over the hard limit is not sent until the person ticks "send as written"
    if (alt.form) alt.form.addEventListener("submit", (ev) => {
      if (force && !force.hidden && !$("#force-alt").checked) {
        ev.preventDefault();
        $("#force-alt").focus();
      }
    });
    ["title", "caption", "summary"].forEach((id) => { const el = $("#" + id); if (el) el.addEventListener("input", check); });
    $$("input[name='action.alt_text']").forEach((r) => r.addEventListener("change", check));
    check();
  }

  // --- tags as chips ----------------------------------------------------------------------------------------
  const chips = $("#chips");
  const vocab = json("vocab-data");
  const hidden = $("#tags-value");
  const tagInput = $("#tag-input");
  const hint = $("#tag-hint");
  if (chips && vocab && hidden && tagInput) {
    const known = new Map(vocab.tags.map((t) => [t.tag, t]));
    const byName = new Map();
    vocab.tags.forEach((t) => [t.label].concat(t.synonyms || []).forEach((s) => {
      const k = s.toLowerCase(); if (!byName.has(k)) byName.set(k, t.tag);
    }));
    $(".raw-tags").hidden = true;
    const sync = () => {
      hidden.value = $$("li.chip:not(.removed)", chips).map((c) => c.dataset.tag).join(", ");
      hidden.dispatchEvent(new Event("change"));
    };
    const addRemove = (chip) => {
      const b = document.createElement("button");
      b.type = "button"; b.className = "x";
      const says = () => {  // a chip drawn removed (a form carried back) says so from the start
        b.textContent = chip.classList.contains("removed") ? "↺" : "×";
        b.setAttribute("aria-label", (chip.classList.contains("removed") ? "keep tag " : "reject tag ") + chip.dataset.tag);
      };
      says();
      b.addEventListener("click", () => {
        if (chip.classList.contains("added")) chip.remove();
        else chip.classList.toggle("removed");
        says();
        sync();
      });
      chip.appendChild(b);
    };
    $$("li.chip", chips).forEach(addRemove);
    const resolve = (raw) => {
      let v = raw.trim();
      if (!v) return null;
      if (known.has(v)) return { tag: v };
      if (v in vocab.deprecated) {
        const repl = vocab.deprecated[v];
        return repl ? { tag: repl, note: v + " is deprecated: added its replacement " + repl }
          : { error: v + " was removed from the vocabulary and has no replacement" };
      }
      const byLabel = byName.get(v.toLowerCase());
      if (byLabel) return { tag: byLabel };
      return { error: "“" + v + "” is not in the vocabulary (" + vocab.version + ")" };
    };
    const add = () => {  // true when the box is empty or its text became a chip
      const r = resolve(tagInput.value);
      if (!r) return true;
      if (r.error) { hint.textContent = r.error; hint.className = "hint bad"; tagInput.setAttribute("aria-invalid", "true"); return false; }
      const existing = $$("li.chip", chips).find((c) => c.dataset.tag === r.tag);
      if (existing) {
        existing.classList.remove("removed");
      } else {
        const t = known.get(r.tag);
        const li = document.createElement("li");
        li.className = "chip added"; li.dataset.tag = r.tag;
        const label = document.createElement("span"); label.className = "label"; label.textContent = t ? t.label : r.tag;
        const id = document.createElement("span"); id.className = "tagid"; id.textContent = r.tag;
        const src = document.createElement("span"); src.className = "src src-human"; src.textContent = "human";
        li.append(label, " ", id, " ", src);
        addRemove(li);
        chips.appendChild(li);
      }
      hint.textContent = r.note || ""; hint.className = "hint";
      tagInput.removeAttribute("aria-invalid");
      tagInput.value = "";
      sync();
      return true;
    };
    // suggestions: the app's own list, opened above the box: the browser's list (a datalist) opened below it, over
    // the buttons, where a click on "Approve all" picked a tag instead (trial 18)
    const suggest = $("#tag-suggest");
    const entries = vocab.tags.map((t) => ({ value: t.tag, text: t.label + (t.synonyms && t.synonyms.length ? " — " + t.synonyms.slice(0, 4).join(", ") : ""),
                                             names: [t.tag, t.label].concat(t.synonyms || []) }))
      .concat(Object.entries(vocab.deprecated).map(([old, repl]) => ({ value: old, text: "deprecated → " + (repl || "removed, no replacement"), names: [old] })));
    entries.forEach((e) => { e.keys = e.names.map(squash); });
    let picks = [], at = -1;
    const closeList = () => {
      picks = []; at = -1;
      suggest.hidden = true; suggest.replaceChildren(); tagInput.setAttribute("aria-expanded", "false");
      tagInput.removeAttribute("aria-activedescendant");
    };
    const pick = (e) => { tagInput.value = e.value; closeList(); add(); };
    const mark = () => {  // the highlighted option is the box's active descendant: a screen reader reads it
      $$("li", suggest).forEach((li, i) => li.setAttribute("aria-selected", String(i === at)));
      if (at >= 0) tagInput.setAttribute("aria-activedescendant", "tag-opt-" + at);
      else tagInput.removeAttribute("aria-activedescendant");
    };
    const openList = () => {
      const q = squash(tagInput.value);
      // the best first: a name that is the text, starts with it, has a word starting with it, contains it
      const score = (k) => (k === q ? 0 : k.startsWith(q) ? 1 : (" " + k).includes(" " + q) ? 2 : k.includes(q) ? 3 : 9);
      const best = (e) => e.keys.reduce((b, k, i) => (score(k) < b[0] ? [score(k), e.names[i]] : b), [9, ""]);
      picks = q ? entries.map((e) => [...best(e), e]).filter(([r]) => r < 9).sort((a, b) => a[0] - b[0]).slice(0, 8)
        .map(([, name, e]) => ({ ...e, text: e.text.includes(name) || name === e.value ? e.text : e.text + " (" + name + ")" })) : [];
      at = -1;
      tagInput.removeAttribute("aria-activedescendant");
      suggest.replaceChildren(...picks.map((e, i) => {
        const li = document.createElement("li");
        li.setAttribute("role", "option"); li.dataset.tag = e.value; li.id = "tag-opt-" + i;
        const id = document.createElement("span"); id.className = "tagid"; id.textContent = e.value;
        li.append(id, " ", e.text);
        li.addEventListener("mousedown", (ev) => { ev.preventDefault(); pick(e); });  // the box keeps the focus
        return li;
      }));
      suggest.hidden = !picks.length; tagInput.setAttribute("aria-expanded", String(picks.length > 0));
    };
    tagInput.addEventListener("input", openList);
    tagInput.addEventListener("blur", closeList);
    tagInput.addEventListener("keydown", (ev) => {
      if ((ev.key === "ArrowDown" || ev.key === "ArrowUp") && picks.length) {
        ev.preventDefault();
        at = (at + (ev.key === "ArrowDown" ? 1 : picks.length - 1 + (at < 0 ? 1 : 0))) % picks.length;
        mark();
      } else if (ev.key === "Escape" && picks.length) {
        ev.preventDefault(); ev.stopPropagation(); closeList();  // the first Escape closes the list, the next leaves
      } else if (ev.key === "Enter") {
        ev.preventDefault();
        if (at >= 0) pick(picks[at]); else { closeList(); add(); }
      }
    });
    // text typed and left in the box is never added on blur: the chip (and its note) appeared between the press and
    // the release of a click on "Approve all", moved the button away under the pointer and the click was lost,
    // nothing sent (trial 18). The form adds it when it is sent instead, or says why it cannot and sends nothing.
    if (tagInput.form) tagInput.form.addEventListener("submit", (ev) => {
      if (ev.submitter && ev.submitter.value === "reject") return;  // the whole asset is rejected: tags do not matter
      if (add()) return;
      ev.preventDefault();
      hint.textContent += ": nothing was sent. Pick a tag from the list, or clear the box.";
      tagInput.focus();
    });
  }

  // --- restricted or unknown rights: approving the asset (Approve all, `a`, Enter in a field) asks first, on the page,
  // so Cancel keeps the edits (the server asks on a page of its own when the form comes without this confirmation) --
  const rightsAsk = $("#rights-ask");
  const rightsConfirmed = $("#rights-confirmed");
  const approveButton = $("#approve");
  let asking = () => false;  // the question is open
  let cancelAsk = () => {};  // what its Cancel (and Esc) does
  if (rightsAsk && rightsConfirmed && approveButton && approveButton.form) {
    const form = approveButton.form;
    let opener = null;  // what had the focus when the question opened: Cancel returns there (trial 28 m4)
    asking = () => !rightsAsk.hidden;
    cancelAsk = () => {
      rightsAsk.hidden = true;
      const back = opener && opener !== document.body && opener.isConnected && !rightsAsk.contains(opener) ? opener : approveButton;
      opener = null;
      back.focus();
    };
    form.addEventListener("submit", (ev) => {
      if (ev.defaultPrevented) { rightsConfirmed.value = ""; return; }  // not sent (another check stopped it)
      if (!ev.submitter || ev.submitter.value !== "approve" || rightsConfirmed.value) return;
      ev.preventDefault();
      if (rightsAsk.hidden) opener = document.activeElement;
      rightsAsk.hidden = false;
      $("#rights-ask-title").focus();  // read first, as the rights-check page's heading is
    });
    $("#rights-approve").addEventListener("click", () => {
      rightsConfirmed.value = rightsAsk.dataset.confirmed;
      form.requestSubmit(approveButton);
    });
    $("#rights-keep").addEventListener("click", cancelAsk);
  }

  // --- unsent work: leaving the asset with edited fields or field decisions not sent asks first -----------------
  // the app's own ways out (j / k, links) ask with a confirm; closing or reloading the tab with the browser's
  // beforeunload prompt. Sending the decision form does not ask.
  const decision = $("#decision");
  let leaving = false;  // the editor sent the form or already confirmed leaving
  // against what the page showed (`shown.<f>`): a page drawn with kept edits (a refused decision, a rights check's
  // Cancel) has them unsent too; the tags' box is in another form than its `shown.tags`
  const shownOf = (el) => el.name !== "value.tags" && decision.querySelector(`input[type=hidden][name='shown.${el.name.slice(6)}']`);
  const initial = decision ? $$("textarea, input[name^='value.']", decision).map((el) => [el, (shownOf(el) || el).value]) : [];
  const unsent = () => !leaving && (initial.some(([el, v]) => el.value.trim() !== v.trim())
    || $$("input[type=radio][name^='action.']:checked", decision || document).some((r) => r.value !== ""));
  const mayLeave = () => {
    if (!unsent()) return true;
    if (!window.confirm("This asset has edits you have not sent. Leave without sending them?")) return false;
    leaving = true;
    return true;
  };
  if (decision) {
    decision.addEventListener("submit", (ev) => { if (!ev.defaultPrevented) leaving = true; });
    window.addEventListener("beforeunload", (ev) => { if (unsent()) { ev.preventDefault(); ev.returnValue = ""; } });
    window.addEventListener("pageshow", (ev) => { if (ev.persisted) leaving = false; });  // back to this page
    document.addEventListener("click", (ev) => {  // a link that opens in this tab (not a new-tab click)
      const a = ev.target.closest && ev.target.closest("a[href]");
      const here = ev.button === 0 && !ev.ctrlKey && !ev.metaKey && !ev.shiftKey && !ev.altKey && !a?.target;
      if (a && here && !ev.defaultPrevented && !mayLeave()) ev.preventDefault();
    });
  }

  // --- the queue: a current row that j / k move and Enter opens ------------------------------------------------
  const rows = $$("table.queue tbody tr").filter((tr) => $("a.open", tr));
  let current = -1;
  const moveRow = (step) => {
    if (!rows.length) return false;
    if (current >= 0) { rows[current].classList.remove("current"); rows[current].removeAttribute("aria-current"); }
    current = Math.max(0, Math.min(rows.length - 1, current + step));
    const row = rows[current];
    row.classList.add("current");
    row.setAttribute("aria-current", "true");
    row.tabIndex = -1;  // focused: a screen reader reads the row j / k moved to
    row.focus({ preventScroll: true });
    row.scrollIntoView({ block: "nearest" });
    return true;
  };

  // --- keyboard shortcuts -----------------------------------------------------------------------------------
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    // typing: a text field, a list or editable text has the focus; a radio button, a checkbox or a button does
    // not take letters, so j / k / e / t stay shortcuts after a click on "accept" (trial 15)
    const noText = ["radio", "checkbox", "button", "submit", "reset"];
    const typing = t && ((t.tagName === "INPUT" && !noText.includes((t.type || "").toLowerCase())) ||
                         t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
    // a control (or a link) has the focus: Enter and Space are its own, and `a` / `x` (approve, reject) do not
    // act from it (trial 20: `a` on a clicked radio approved at once, Enter on a queue button also opened a row).
    // Esc leaves it: the focus goes back to the page
    const control = t && t !== document.body && t.closest &&
      t.closest("input, select, textarea, button, a[href], summary, label, [contenteditable=''], [contenteditable=true]");
    // the rights question: Esc in it (or on the page) is its Cancel; `a` says to answer it first (trial 28 m5)
    if (asking() && (!t || !t.closest || t.closest("#rights-ask") || !(typing || control))) {
      if (ev.key === "Escape") { ev.preventDefault(); cancelAsk(); return; }
      if (ev.key === "a" && shortcutsOn && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
        ev.preventDefault();
        say("Answer the question first: Approve this asset anyway, or Cancel (Esc).");
        return;
      }
    }
    if (ev.key === "Escape" && (typing || control)) { t.blur(); return; }
    // Enter on a checkbox or a radio button does what the control does (nothing): it never sends its form
    // through the browser's implicit submission ("Approve 1 selected?" from a ticked row: trial 20b)
    if (ev.key === "Enter" && t && t.tagName === "INPUT" && ["checkbox", "radio"].includes((t.type || "").toLowerCase())) {
      ev.preventDefault();
      return;
    }
    if (!shortcutsOn || typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const onPage = !control;  // the body, the outcome banner or a queue row
    const go = (sel) => { const a = $(sel); if (a && mayLeave()) { window.location.href = a.href; } };
    switch (ev.key) {
      case "j": case "n": if (!moveRow(1)) go("#next"); break;
      case "k": case "p": if (!moveRow(-1)) go("#prev"); break;
      case "a": case "x": {
        const b = $(ev.key === "a" ? "#approve" : "#reject");
        if (b && onPage) { ev.preventDefault(); b.click(); }
        else if (b) say("Shortcuts work from the page: press Esc first, then " + ev.key + ".");
        break;
      }
      case "e": if (alt) { ev.preventDefault(); alt.focus(); alt.setSelectionRange(alt.value.length, alt.value.length); } break;
      case "t": if (tagInput) { ev.preventDefault(); tagInput.focus(); } break;
      case "Enter": {  // on the queue, from the page or a row j / k moved to: never from a button, box or link
        const row = rows.includes(t) ? t : null;  // the row itself, not a box or link in it
        if (rows.length && (row || onPage)) {  // the page: the body, <main>, the outcome banner (review 13 L6)
          window.location.href = $("a.open", row || rows[Math.max(0, current)]).href;
        }
        break;
      }
      case "?": toggleHelp(); break;
      default: return;
    }
  });
})();
