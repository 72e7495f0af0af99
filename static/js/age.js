// age.js: a study's age range in words, as families read it (upstream:
// a year is 365 days and a month 30).
function part(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/** "6 months", "2 years", "1 year 3 months", "12 days". */
export function ageText(days) {
  if (days === 0) return "newborn";
  const years = Math.floor(days / 365);
  const months = Math.floor((days % 365) / 30);
  const rest = days - years * 365 - months * 30;
  const out = [];
  if (years) out.push(part(years, "year", "years"));
  if (months) out.push(part(months, "month", "months"));
  if (!years && !months && rest) out.push(part(rest, "day", "days"));
  return out.join(" ") || "newborn";
}

/** "For children from 6 months to 3 years old." */
export function rangeText(minDays, maxDays) {
  return `For children from ${ageText(minDays)} to ${ageText(maxDays)} old.`;
}
