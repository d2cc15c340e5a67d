"""Checks every portal page must pass in the browser: fits 375 px, labels, fieldsets, 44 px tap
targets, visible keyboard focus, and axe-core (WCAG 2.0/2.1 A and AA, colour contrast included).

axe-core comes bundled in the PyPI package axe-playwright-python. It needs JavaScript to run, so a
page loaded with JavaScript off is audited as a copy: its HTML is served, unchanged, to a page in a
JavaScript-on context (the page's own stylesheets come from the live server as usual).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import BrowserContext, Page, Route

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
MIN_TARGET_PX = 44

# One pass over the DOM: width, labels, fieldsets, tap targets. Returns lists of offenders.
LAYOUT_JS = """
(minTarget) => {
  const shown = el => el.checkVisibility({visibilityProperty: true, opacityProperty: true})
                      && el.getBoundingClientRect().width > 1 && el.getBoundingClientRect().height > 1;
  const describe = el => el.outerHTML.replace(/\\s+/g, ' ').slice(0, 140);
  const fields = [...document.querySelectorAll('input:not([type=hidden]), select, textarea')].filter(shown);

  const unlabelled = fields.filter(f => ![...(f.labels || [])].some(l => l.textContent.trim()))
                           .map(describe);

  const ungrouped = [];
  const names = new Map();
  for (const f of fields.filter(f => f.type === 'radio' || f.type === 'checkbox')) {
    names.set(f.name, (names.get(f.name) || []).concat([f]));
  }
  for (const [name, inputs] of names) {
    if (inputs.length < 2 && inputs[0].type === 'checkbox') continue;  // a lone checkbox is no group
    for (const f of inputs) {
      const set = f.closest('fieldset');
      const legend = set && set.querySelector(':scope > legend');
      if (!legend || !legend.textContent.trim()) ungrouped.push(describe(f));
    }
  }

  const small = [];
  const measure = (el, what) => {
    const box = el.getBoundingClientRect();
    if (box.height < minTarget) small.push(`${what} ${Math.round(box.height)}px: ${describe(el)}`);
  };
  document.querySelectorAll('button, input[type=submit], input[type=button], main a[href]')
    .forEach(el => { if (shown(el)) measure(el, el.tagName.toLowerCase()); });
  fields.filter(f => f.type === 'radio' || f.type === 'checkbox').forEach(f => {
    const label = f.closest('label') || (f.labels && f.labels[0]);
    if (label) measure(label, `label of ${f.type}`);
  });

  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
          unlabelled, ungrouped, small};
}
"""

FOCUS_JS = """
() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  return {tag: el.tagName.toLowerCase(), text: (el.textContent || el.value || '').trim().slice(0, 60),
          isButton: el.matches('button, input[type=submit], a.button'),
          focusVisible: el.matches(':focus-visible'), outlineStyle: style.outlineStyle,
          outlineWidth: parseFloat(style.outlineWidth) || 0, boxShadow: style.boxShadow,
          left: box.left, right: box.right, width: box.width};
}
"""


# Focus the keyboard stop just before the first button (radio groups are one stop: their
# checked or first radio), so that one Tab lands on the button. False when there is no button.
BEFORE_FIRST_BUTTON_JS = """
() => {
  const stops = [...document.querySelectorAll(
      'a[href], button, input:not([type=hidden]), select, textarea, [tabindex]')]
    .filter(el => !el.disabled && el.tabIndex >= 0 && el.checkVisibility());
  const keyboard = stops.filter(el => {
    if (el.type !== 'radio') return true;
    const group = stops.filter(o => o.type === 'radio' && o.name === el.name && o.form === el.form);
    return el === (group.find(o => o.checked) || group[0]);
  });
  const index = keyboard.findIndex(el => el.matches('button, input[type=submit], a.button'));
  if (index < 0) return false;
  if (index > 0) keyboard[index - 1].focus(); else document.activeElement.blur();
  return true;
}
"""


@dataclass
class PageReport:
    """Everything wrong with one page; empty lists mean it passed."""

    url: str
    problems: list[str] = field(default_factory=list)
    axe_incomplete: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not self.problems


def layout_problems(page: Page, width: int) -> list[str]:
    found: dict[str, Any] = page.evaluate(LAYOUT_JS, MIN_TARGET_PX)
    problems = []
    if found["innerWidth"] != width:
        problems.append(f"viewport is {found['innerWidth']}px wide, expected {width}px")
    if found["scrollWidth"] > width:
        problems.append(f"scrolls sideways: content is {found['scrollWidth']}px wide at {width}px")
    problems += [f"no label: {html}" for html in found["unlabelled"]]
    problems += [f"radio/checkbox outside a fieldset with a legend: {html}" for html in found["ungrouped"]]
    problems += [f"tap target under {MIN_TARGET_PX}px: {text}" for text in found["small"]]
    return problems


def focus_problems(page: Page) -> list[str]:
    """Tab like a keyboard user: the first Tab reaches the skip link, which comes into view; from
    the control just before the first button, one more Tab reaches the button. Both must show a
    focus ring (the CSS draws it on `:focus-visible`, which a keyboard Tab triggers)."""
    problems = []
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.keyboard.press("Tab")
    skip = page.evaluate(FOCUS_JS)
    if skip is None or skip["text"] != "Skip to content":
        problems.append(f"the first Tab should reach the skip link, it reached {skip}")
    elif skip["left"] < 0 or skip["width"] < 1:
        problems.append("the skip link stays off screen when focused")
    # Tab order is DOM order (no positive tabindex, checked below), so start one stop before.
    has_button = page.evaluate(BEFORE_FIRST_BUTTON_JS)
    if not has_button:
        problems.append("no button on the page")
        button = None
    else:
        page.keyboard.press("Tab")
        button = page.evaluate(FOCUS_JS)
        if button is None or not button["isButton"]:
            problems.append(f"Tab did not reach the first button, it reached {button}")
    for name, state in (("skip link", skip), ("first button", button)):
        if state is not None and (
            state["outlineStyle"] == "none" or state["outlineWidth"] < 2 or not state["focusVisible"]
        ):
            problems.append(f"{name} has no visible focus: {state}")
    positive_tabindex = '[tabindex]:not([tabindex^="-"]):not([tabindex="0"])'
    if page.evaluate(f"() => document.querySelectorAll('{positive_tabindex}').length"):
        problems.append("positive tabindex: the Tab order differs from the reading order")
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    return problems


def _axe_result(page: Page) -> dict[str, Any]:
    options = {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations", "incomplete"]}
    return Axe().run(page, options=options).response


class Auditor:
    """Runs axe on pages whose own context has JavaScript off, through a JS-on copy of the page."""

    def __init__(self, context: BrowserContext) -> None:
        self.context = context
        self.page = context.new_page()
        self._html = ""
        self.page.route("**/*", self._serve)

    def _serve(self, route: Route) -> None:
        if route.request.is_navigation_request():
            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=self._html)
        else:
            route.continue_()

    def axe(self, page: Page) -> dict[str, Any]:
        self._html = page.content()
        self.page.goto(page.url)
        return _axe_result(self.page)


def axe_findings(page: Page, auditor: Auditor | None) -> tuple[list[str], list[str]]:
    """(violations, incomplete) as short lines: rule, impact, the first offending nodes."""
    result = auditor.axe(page) if auditor is not None else _axe_result(page)
    violations = []
    for v in result["violations"]:
        nodes = "; ".join(
            " ".join(n["target"]) + " " + (n.get("failureSummary") or "").replace("\n", " ")
            for n in v["nodes"][:3]
        )
        violations.append(f"axe {v['id']} ({v['impact']}): {v['help']} -> {nodes}")
    incomplete = [f"{i['id']} x{len(i['nodes'])}" for i in result.get("incomplete", [])]
    return violations, incomplete


def audit(page: Page, width: int, auditor: Auditor | None) -> PageReport:
    report = PageReport(page.url)
    report.problems += layout_problems(page, width)
    violations, incomplete = axe_findings(page, auditor)
    report.problems += violations
    report.axe_incomplete = incomplete
    report.problems += focus_problems(page)
    return report
