export default function PortalPage() {
  return null;
}
