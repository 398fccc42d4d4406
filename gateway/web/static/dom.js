/**
 * Building elements with DOM APIs: text always goes in as `textContent`, never as HTML.
 * @module dom
 */

/**
 * A new element.
 * @param {string} tag
 * @param {object} [props] `class`, `text`, `data` (dataset), `on` (listeners), `hidden`, and
 *   any other attribute (set with setAttribute)
 * @param {...(Node|string|null)} children
 * @returns {HTMLElement}
 */
export function el(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name === 'text') element.textContent = value;
    else if (name === 'data') Object.assign(element.dataset, value);
    else if (name === 'on') for (const [event, fn] of Object.entries(value)) element.addEventListener(event, fn);
    else if (name === 'hidden') element.hidden = Boolean(value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) element.append(child);
  }
  return element;
}

/**
 * The element with `id` (it must exist in index.html).
 * @param {string} id
 * @returns {HTMLElement}
 */
export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from the page`);
  return element;
}

/** Sets `text` as the element's content only when it differs (no needless live-region noise). */
export function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

/** Sets a data attribute only when it differs. */
export function setData(element, name, value) {
  const text = String(value);
  if (element.dataset[name] !== text) element.dataset[name] = text;
}
